/**
 * Address parsing and encoding (src/datapath/address.ts): what the API
 * accepts as an address, and the 16-byte form the data plane stores. The
 * allocation-free IPv4 path (writeAddress, canonicalAddress) must agree
 * with the general parser on every input.
 */
import t, { type Test } from 'tap';
import { canonicalAddress, parseAddress, writeAddress } from '../src/model/address.js';

const VALID_V4 = ['0.0.0.0', '10.64.1.2', '255.255.255.255', '1.0.10.100', '192.168.0.1'];
const INVALID_V4 = ['', '1.2.3', '1.2.3.4.5', '1.2.3.', '.1.2.3', '1..2.3', '01.2.3.4', '1.2.3.04', '1.2.3.00', '256.1.1.1', '1.2.3.999', '1.2.3.4 ', ' 1.2.3.4', '1.2.3.a', '1.2.3.-1', '+1.2.3.4', '1.2.3.4/32', '１.2.3.4'];
const VALID_V6 = ['::', '::1', 'fd00::1', 'FD00:0::1', '2001:db8:0:0:1:0:0:1', '::ffff:10.1.2.3', '64:ff9b::10.1.2.3'];
const INVALID_V6 = [':::', '1::2::3', 'fd00::1%eth0', '12345::', 'g::1', '1:2:3:4:5:6:7:8:9', '::ffff:01.2.3.4'];

const written = (t: Test, text: string): { family: number; bytes: Buffer } => {
  const b = Buffer.alloc(20, 0xee);
  const family = writeAddress(text, b, 2);
  t.equal(b[0], 0xee, 'nothing written before the offset');
  t.equal(b[18], 0xee, 'nothing written after the 16 bytes');
  return { family, bytes: b.subarray(2, 18) };
};

t.test('IPv4: strict dotted quads, stored v4-mapped', async (t) => {
  for (const a of VALID_V4) {
    const p = parseAddress(a);
    t.equal(p.family, 4, `${a} is IPv4`);
    t.equal(p.bytes.subarray(0, 12).toString('hex'), '00000000000000000000ffff', `${a} is stored as ::ffff:a.b.c.d`);
    t.equal(p.bytes.subarray(12).join('.'), a, `${a}: the last 4 bytes are the address`);
    t.same(written(t, a), p, `${a}: writeAddress agrees with parseAddress`);
    t.equal(canonicalAddress(a), a, `${a} is its own canonical form`);
  }
  for (const a of INVALID_V4) {
    t.throws(() => parseAddress(a), TypeError, `${JSON.stringify(a)} is refused`);
    t.throws(() => writeAddress(a, Buffer.alloc(16), 0), TypeError, `${JSON.stringify(a)} is refused by writeAddress too`);
    t.throws(() => canonicalAddress(a), TypeError, `${JSON.stringify(a)} has no canonical form`);
  }
});

t.test('IPv6: RFC 4291 text, canonical per RFC 5952; ::ffff:a.b.c.d is IPv4', async (t) => {
  for (const a of VALID_V6) t.same(written(t, a), parseAddress(a), `${a}: writeAddress agrees with parseAddress`);
  t.equal(canonicalAddress('FD00:0::1'), 'fd00::1');
  t.equal(canonicalAddress('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1', 'the first longest zero run is compressed');
  t.equal(canonicalAddress('::ffff:10.1.2.3'), '10.1.2.3', 'a v4-mapped address reads back as IPv4');
  t.equal(parseAddress('::ffff:10.1.2.3').family, 4);
  t.equal(parseAddress('64:ff9b::10.1.2.3').family, 6, 'embedded IPv4 in another prefix stays IPv6');
  for (const a of INVALID_V6) t.throws(() => parseAddress(a), TypeError, `${JSON.stringify(a)} is refused`);
});
