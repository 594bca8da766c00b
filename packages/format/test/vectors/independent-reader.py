#!/usr/bin/env python3
# A second, independent reader of the test vectors, written against docs/FORMAT.md (it does not
# import or translate the TypeScript code): it derives the keys, checks config's MAC, opens the pack, every blob, the
# index, snapshot and manifest, both key slots and the recovery kit, and recomputes the chunker's
# cut points. It is evidence that the document is complete; CI does not run it.
# Needs: python3 >= 3.8 with `cryptography`, and the `zstd` command.
#   python3 packages/format/test/vectors/independent-reader.py
import json, hmac, hashlib, subprocess, base64, unicodedata
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
import os
V = os.path.dirname(os.path.abspath(__file__)) + '/'
rd = lambda n: open(V + n, 'rb').read()
hexf = lambda n: bytes.fromhex(rd(n).decode().strip())
txt = lambda n: rd(n)[:-1]
label = lambda x: ('shelter/v1 ' + x).encode()
master = bytes(range(32))
config = json.loads(txt('config.json'))
repo = bytes.fromhex(config['id'])
def sub(p): return HKDF(hashes.SHA256(), 32, repo, label(p)).derive(master)
K = {p: sub(p) for p in ['data', 'id', 'chunker', 'config', 'fingerprint']}
fp = hmac.new(K['fingerprint'], b'shelter key fingerprint', 'sha256').digest()[:16]
assert fp.hex() == config['fingerprint'], 'fingerprint'
body = {k: config[k] for k in ['v', 'id', 'chunker', 'fingerprint', 'created']}
canon = lambda o: json.dumps(o, separators=(',', ':'), ensure_ascii=False).encode()
assert hmac.new(K['config'], canon(body), 'sha256').hexdigest() == config['mac'], 'config mac'
def unzstd(b): return subprocess.run(['zstd', '-d', '-c'], input=b, capture_output=True, check=True).stdout
def open_env(env, context):
    h = env[0]; assert h >> 4 == 1 and (h & 14) == 0
    pt = AESGCM(K['data']).decrypt(env[1:13], env[13:], bytes([h]) + context)
    L = int.from_bytes(pt[:4], 'little'); pay = pt[4:]
    out = unzstd(pay) if h & 1 else pay
    assert len(out) == L
    return out
def open_obj(b, kind):
    assert b[-16:] == fp
    return open_env(b[:-16], label(kind) + fp)
pack = hexf('pack.hex')
hl = int.from_bytes(pack[-4:], 'little')
hdr = open_obj(pack[-4 - hl:-4], 'pack header')
assert hashlib.sha256(pack).hexdigest() == json.loads(txt('vectors.json'))['pack']['id']
blobs = {}
for i in range(0, len(hdr), 45):
    e = hdr[i:i + 45]; t = e[0]; bid = e[1:33]
    off, ln, raw = (int.from_bytes(e[33 + 4 * k:37 + 4 * k], 'little') for k in range(3))
    pt = open_env(pack[off:off + ln], bid)
    assert len(pt) == raw and hmac.new(K['id'], pt, 'sha256').digest() == bid
    blobs[bid.hex()] = pt
print('pack ok:', len(blobs), 'blobs')
tree = txt('tree.json')
assert tree in blobs.values(), 'root tree'
nodes = json.loads(tree)['nodes']
names = [base64.b64decode(n['nameB64']) if 'nameB64' in n else n['name'].encode() for n in nodes]
assert names == sorted(names)
for n in nodes:
    for c in n.get('content', []): assert c in blobs
    if 'subtree' in n: assert n['subtree'] in blobs
# canonical tree re-serialization (python json with ensure_ascii=False matches JSON.stringify for these strings)
assert canon(json.loads(tree)) == tree, 'tree canonical'
idx = hexf('index.hex'); ip = open_obj(idx, 'index')
assert int.from_bytes(ip[:4], 'little') == 1 and ip[40:44] == (len(hdr) // 45).to_bytes(4, 'little') and ip[44:] == hdr
snapb = hexf('snapshot.hex'); snap = json.loads(open_obj(snapb, 'snapshot'))
man = json.loads(txt('manifest.json'))
sid = hashlib.sha256(snapb).hexdigest()
assert man['snapshot'] == 'snapshots/' + sid and man['time'] == snap['time'] and man['name'] == snap['name']
assert canon(man) == txt('manifest.json')
assert snap['tree'] in blobs
# key slots
s = json.loads(txt('keyslot-scrypt.json'))
pw = unicodedata.normalize('NFC', 'correct horse battery staple').encode()
kek = hashlib.scrypt(pw, salt=bytes.fromhex(s['salt']), n=s['params']['N'], r=s['params']['r'], p=s['params']['p'], dklen=32)
aad = label('key slot') + bytes.fromhex(s['repository']) + bytes.fromhex(s['fingerprint'])
assert AESGCM(kek).decrypt(bytes.fromhex(s['nonce']), bytes.fromhex(s['wrapped']), aad) == master
s = json.loads(txt('keyslot-wrapped.json'))
kek = HKDF(hashes.SHA256(), 32, bytes.fromhex(s['salt']), label('key slot')).derive(b'\x55' * 32)
assert AESGCM(kek).decrypt(bytes.fromhex(s['nonce']), bytes.fromhex(s['wrapped']), aad) == master
# recovery kit
kit = rd('recovery-kit.txt').decode().split('\n')
i = [k for k, l in enumerate(kit) if l.startswith('master key:')][0]
b32 = (kit[i].split(':', 1)[1] + kit[i + 1]).replace(' ', '')
assert base64.b32decode(b32 + '====') == master
# gear table + chunker
enc = Cipher(algorithms.AES(K['chunker']), modes.CTR(bytes(16))).encryptor()
ks = enc.update(bytes(1024)); G = [int.from_bytes(ks[4 * j:4 * j + 4], 'little') for j in range(256)]
vj = json.loads(txt('vectors.json'))
assert G[:4] == vj['gearTable']['first']
def stream(n, kb):
    e = Cipher(algorithms.AES(bytes([kb]) * 32), modes.CTR(bytes(16))).encryptor(); return e.update(bytes(n))
data = stream(3 << 20, 0x42) + bytes(2 << 20) + stream(100000, 0x43)
mn, avg, mx = 65536, 262144, 1048576
k = avg.bit_length() - 1
top = lambda b: (0xffffffff << (32 - b)) & 0xffffffff
mS, mL = top(k + 2), top(k - 2)
lens = []; s0 = 0
while s0 < len(data):
    h = 0; end = None
    for i in range(max(0, mn - 32), mx):
        if s0 + i >= len(data): break
        h = (2 * h + G[data[s0 + i]]) & 0xffffffff
        L = i + 1
        if L == mx or (mn <= L < avg and h & mS == 0) or (avg <= L < mx and h & mL == 0): end = L; break
    if end is None: end = len(data) - s0
    lens.append(end); s0 += end
assert lens == vj['chunker']['lengths'], (lens, vj['chunker']['lengths'])
print('independent reader: all vectors verified')
