export * from './codec.js';
export * from './link.js';
export * from './map.js';
export * from './netlink.js';
export * from './object.js';
export * from './program.js';
export * from './system.js';
export { isErrno, type ErrnoError } from './native.js';
