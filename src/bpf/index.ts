export * from './codec.js';
export * from './map.js';
export * from './object.js';
export * from './program.js';
export * from './system.js';
export { isErrno, type ErrnoError } from './native.js';
