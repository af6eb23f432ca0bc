#!/usr/bin/env node
// Side-by-side comparison of Guild's Rust repo v3 implementation with the
// AT Protocol TypeScript reference implementation (@atproto/repo).
//
// Modes (N defaults to 100000; outputs go to bench/out unless --out DIR):
//   node bench/compare.mjs --reference-only [N]  generate records, build the reference MST, print root + timings
//   node bench/compare.mjs --generate [N]        write records-N.jsonl and records-N-minus7.jsonl
//   node bench/compare.mjs --compare [N]         reference build + checks against the Rust outputs that
//                                                bench/run.sh left in the out dir (see README.md)
//   node bench/compare.mjs --fake-rust [N]       write stand-ins for the Rust outputs made with the reference
//                                                itself and an ed25519 did:key (tests this script, not Guild)
// Flags: --out DIR, --plain (records without $link/$bytes), --no-init-commit (skip the
//        Repo.formatInitCommit measurement), --quiet
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'

import {
  MST,
  MemoryBlockstore,
  BlockMap,
  Repo,
  readCarWithRoot,
  verifyRepo,
  blocksToCarFile,
  signCommit,
  verifyCommitSig,
} from '@atproto/repo'
import { Secp256k1Keypair } from '@atproto/crypto'
import { encode as cborEncode } from '@atproto/lex-cbor'
import { cidForCbor, lexEquals } from '@atproto/lex-data'
import { jsonToLex, lexToJson } from '@atproto/lex-json'
import { ed25519 } from '@noble/curves/ed25519'
import { base58btc } from 'multiformats/bases/base58'
import { CID } from 'multiformats/cid'

const HERE = path.dirname(fileURLToPath(import.meta.url))

// ---------------------------------------------------------------------------
// arguments
// ---------------------------------------------------------------------------
function parseArgs(argv) {
  const opts = {
    mode: null,
    n: 100000,
    out: path.join(HERE, 'out'),
    plain: process.env.BENCH_PLAIN === '1',
    initCommit: true,
    quiet: false,
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (['--reference-only', '--generate', '--compare', '--fake-rust'].includes(a)) {
      opts.mode = a.slice(2)
      if (argv[i + 1] !== undefined && /^\d+$/.test(argv[i + 1])) opts.n = Number(argv[++i])
    } else if (a === '--out') opts.out = path.resolve(argv[++i])
    else if (a === '--plain') opts.plain = true
    else if (a === '--no-init-commit') opts.initCommit = false
    else if (a === '--quiet') opts.quiet = true
    else if (/^\d+$/.test(a)) opts.n = Number(a)
    else {
      console.error(`unknown argument: ${a}`)
      process.exit(2)
    }
  }
  if (!opts.mode) {
    console.error(
      'usage: node compare.mjs (--reference-only|--generate|--compare|--fake-rust) [N] [--out DIR] [--plain] [--no-init-commit]',
    )
    process.exit(2)
  }
  if (!Number.isSafeInteger(opts.n) || opts.n < 1) {
    console.error(`N must be a positive integer, got ${opts.n}`)
    process.exit(2)
  }
  return opts
}

// ---------------------------------------------------------------------------
// deterministic record generation
// ---------------------------------------------------------------------------
const S32 = '234567abcdefghijklmnopqrstuvwxyz'
function s32(n, width) {
  let s = ''
  while (n > 0) {
    s = S32[n % 32] + s
    n = Math.floor(n / 32)
  }
  return s.padStart(width, '2')
}
// 2026-01-01T00:00:00Z in microseconds; one TID per millisecond of index, clock id = i % 32.
// 1767225600000000 + 1000*i stays far below 2^53 for any N we can hold in memory.
const TID_BASE_US = 1767225600000000
export function tidForIndex(i) {
  return s32(TID_BASE_US + i * 1000, 11) + s32(i % 32, 2)
}

function mulberry32(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const WORDS = (
  'guild coop member work shared ledger craft repo merkle tree leaf node commit sign key ' +
  'record block hash cid prefix layer fanout split merge verify cbor car stream rust node ' +
  'weave forge timber market harvest mill bread river stone bridge'
).split(' ')
const ODD_WORDS = [
  'café', 'naïve', 'Ærøskøbing', '日本語', '한국어', 'Ωμέγα', '🦀', '🎉🎉', 'ﬁ', 'e\u0301',
  'tab\there', 'line\nbreak', '"quoted"', 'back\\slash', '<&>',
]
const CREATED_AT = '2026-01-01T00:00:00.000Z'
const INTS = [0, 1, -1, 23, 24, -24, -25, 255, 256, 65535, 65536, -65537, 4294967295, 4294967296,
  -4294967297, 9007199254740991, -9007199254740991]

function bodyText(i) {
  const rnd = mulberry32(i * 2654435761 + 0x9e3779b9)
  let target
  if (i === 3) target = 70000 // one string that needs a 4-byte CBOR length
  else if (i % 97 === 5) target = 1000 + Math.floor(rnd() * 2000)
  else target = 1 + Math.floor(rnd() * rnd() * 420) // 1..~420 chars, skewed short (the lexicon wants a body)
  const parts = []
  let len = 0
  while (len < target) {
    const w = i % 11 === 4 && rnd() < 0.15 ? ODD_WORDS[Math.floor(rnd() * ODD_WORDS.length)]
      : WORDS[Math.floor(rnd() * WORDS.length)]
    parts.push(w)
    len += w.length + 1
  }
  return parts.join(' ')
}

// Deterministic record i (0-based). Mix: index 0 is a profile at rkey "self", ~5% notes with
// non-TID record keys, ~2% "link" records (blob ref with $link + $bytes unless plain), the rest
// text records with TID keys.
export function makeRecord(i, plain) {
  if (i === 0) {
    return {
      collection: 'coop.guild.actor.profile',
      rkey: 'self',
      record: {
        $type: 'coop.guild.actor.profile',
        displayName: 'Guild bench ✨',
        description: 'profile record at a literal record key',
        createdAt: CREATED_AT,
      },
    }
  }
  if (i % 20 === 7) {
    const rkey = i % 40 === 7 ? `note-${i.toString(36)}` : `n:${i}~x_${(i * 7919) % 1000}`
    return {
      collection: 'coop.guild.data.note',
      rkey,
      record: {
        $type: 'coop.guild.data.note',
        text: bodyText(i),
        priority: INTS[i % INTS.length],
        pinned: i % 3 === 0,
        parent: null,
        meta: { z: i, aa: -i, b: [i % 5, `x${i}`, { k: true, kk: null }] },
        createdAt: CREATED_AT,
      },
    }
  }
  if (i % 50 === 13) {
    const record = {
      $type: 'coop.guild.data.link',
      subject: {
        uri: `at://did:plc:guildbench000000000000/coop.guild.data.text/${tidForIndex(i - 1)}`,
        cid: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm',
      },
      createdAt: CREATED_AT,
    }
    if (!plain) {
      record.embed = {
        $type: 'blob',
        ref: { $link: rawCidForIndex(i) },
        mimeType: 'image/png',
        size: 1000 + i,
      }
      record.sig = { $bytes: Buffer.from(`sig-${i}-bytes`).toString('base64').replace(/=+$/, '') }
    }
    return { collection: 'coop.guild.data.link', rkey: tidForIndex(i), record }
  }
  return {
    collection: 'coop.guild.data.text',
    rkey: tidForIndex(i),
    record: {
      $type: 'coop.guild.data.text',
      title: `work ${i}`,
      body: bodyText(i),
      createdAt: CREATED_AT,
      tags: ['a', 'b'],
    },
  }
}

function rawCidForIndex(i) {
  // CIDv1 raw sha256 of a deterministic byte string, computed synchronously
  const digest = sha256(Buffer.from(`blob-${i}`))
  const bytes = new Uint8Array(36)
  bytes.set([0x01, 0x55, 0x12, 0x20], 0)
  bytes.set(digest, 4)
  return 'b' + base32lower(bytes)
}
function base32lower(bytes) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  let out = ''
  let bits = 0
  let value = 0
  for (const b of bytes) {
    value = (value << 8) | b
    bits += 8
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31]
  return out
}

export const isDeleted = (i) => i % 7 === 6 // "every 7th": the 7th, 14th, ... record

function generate(n, plain) {
  const items = new Array(n)
  for (let i = 0; i < n; i++) items[i] = makeRecord(i, plain)
  return items
}

function writeJsonl(file, items, filter) {
  const fd = fs.openSync(file, 'w')
  let buf = ''
  let count = 0
  for (let i = 0; i < items.length; i++) {
    if (filter && !filter(i)) continue
    buf += JSON.stringify(items[i]) + '\n'
    count++
    if (buf.length > 1 << 20) {
      fs.writeSync(fd, buf)
      buf = ''
    }
  }
  if (buf) fs.writeSync(fd, buf)
  fs.closeSync(fd)
  return count
}

function writeRecordFiles(opts, items) {
  fs.mkdirSync(opts.out, { recursive: true })
  const full = path.join(opts.out, `records-${opts.n}.jsonl`)
  const minus7 = path.join(opts.out, `records-${opts.n}-minus7.jsonl`)
  writeJsonl(full, items)
  const kept = writeJsonl(minus7, items, (i) => !isDeleted(i))
  return { full, minus7, kept }
}

// ---------------------------------------------------------------------------
// the reference build
// ---------------------------------------------------------------------------
const sha256 = (bytes) => new Uint8Array(createHash('sha256').update(bytes).digest())
const ms = (t0) => performance.now() - t0

// Everything the Rust --stats total covers: encode each record to DAG-CBOR + CID, build the MST
// by one-by-one MST.add (how @atproto/repo builds), compute the root, sign the commit.
async function referenceBuild(items, keypair, did) {
  const storage = new MemoryBlockstore()
  const blocks = new BlockMap()
  const keys = new Array(items.length)
  const cids = new Array(items.length)

  let t0 = performance.now()
  for (let i = 0; i < items.length; i++) {
    const it = items[i]
    const bytes = cborEncode(jsonToLex(it.record)) // JSON -> AT data model ($link/$bytes), DAG-CBOR
    const cid = await cidForCbor(bytes)
    blocks.set(cid, bytes)
    keys[i] = `${it.collection}/${it.rkey}`
    cids[i] = cid
  }
  const encodeMs = ms(t0)

  t0 = performance.now()
  let mst = await MST.create(storage)
  for (let i = 0; i < items.length; i++) mst = await mst.add(keys[i], cids[i])
  const root = await mst.getPointer()
  const mstMs = ms(t0)

  t0 = performance.now()
  const rev = tidForIndex(items.length + 1)
  const commit = await signCommit({ did, version: 3, rev, prev: null, data: root }, keypair)
  const commitBytes = cborEncode(commit)
  const commitCid = await cidForCbor(commitBytes)
  const commitMs = ms(t0)

  return {
    mst, root, keys, cids, blocks, commit, commitCid, commitBytes,
    timing: { encode_ms: encodeMs, mst_ms: mstMs, commit_ms: commitMs, total_ms: encodeMs + mstMs + commitMs },
  }
}

// The reference's own "create a repo with these records" entry point. It does the same work plus
// collecting every new MST block (DataDiff against an empty tree), so it is reported separately.
async function referenceInitCommit(items, keypair, did) {
  const writes = items.map((it) => ({
    action: 'create', collection: it.collection, rkey: it.rkey, record: jsonToLex(it.record),
  }))
  const t0 = performance.now()
  const commit = await Repo.formatInitCommit(new MemoryBlockstore(), did, keypair, writes)
  return { ms: ms(t0), blocks: commit.newBlocks.size }
}

async function referenceDeletions(ref, items) {
  const delKeys = []
  for (let i = 0; i < items.length; i++) if (isDeleted(i)) delKeys.push(ref.keys[i])
  let t0 = performance.now()
  let mst = ref.mst
  for (const k of delKeys) mst = await mst.delete(k)
  const root = await mst.getPointer()
  const deleteMs = ms(t0)
  // the MST is history independent: building the reduced set from scratch must give the same root
  t0 = performance.now()
  let fresh = await MST.create(new MemoryBlockstore())
  for (let i = 0; i < items.length; i++) if (!isDeleted(i)) fresh = await fresh.add(ref.keys[i], ref.cids[i])
  const freshRoot = await fresh.getPointer()
  const rebuildMs = ms(t0)
  return {
    deleted: delKeys.length, root, deleteMs, freshRoot, rebuildMs,
    selfConsistent: root.equals(freshRoot),
  }
}

// all MST node blocks of a fully in-memory tree
async function mstBlocks(mst) {
  const { blocks } = await mst.getUnstoredBlocks() // storage is empty, so this is every node
  return blocks
}

const rate = (n, t) => (t > 0 ? Math.round(n / (t / 1000)) : null)
const fmt = (t) => (t === null || t === undefined ? 'n/a' : `${t.toFixed(1)} ms`)

async function newKeypair() {
  const keypair = await Secp256k1Keypair.create()
  return { keypair, did: keypair.did() }
}

// ---------------------------------------------------------------------------
// modes
// ---------------------------------------------------------------------------
async function referenceOnly(opts) {
  let t0 = performance.now()
  const items = generate(opts.n, opts.plain)
  const files = writeRecordFiles(opts, items)
  const genMs = ms(t0)
  const { keypair, did } = await newKeypair()
  const ref = await referenceBuild(items, keypair, did)
  const del = await referenceDeletions(ref, items)
  let init = null
  if (opts.initCommit) init = await referenceInitCommit(items, keypair, did)
  const out = {
    n: opts.n,
    records_file: files.full,
    generate_ms: genMs,
    reference: { ...ref.timing, records_per_s: rate(opts.n, ref.timing.total_ms), root: ref.root.toString() },
    reference_format_init_commit_ms: init?.ms ?? null,
    deletions: {
      deleted: del.deleted, delete_ms: del.deleteMs, root: del.root.toString(),
      rebuild_root: del.freshRoot.toString(), self_consistent: del.selfConsistent,
    },
    node: process.version,
  }
  console.log(`N = ${opts.n} (records in ${files.full})`)
  console.log(`reference MST root:        ${out.reference.root}`)
  console.log(`reference encode+cid:      ${fmt(ref.timing.encode_ms)}`)
  console.log(`reference MST add+root:    ${fmt(ref.timing.mst_ms)}`)
  console.log(`reference sign commit:     ${fmt(ref.timing.commit_ms)}`)
  console.log(`reference total:           ${fmt(ref.timing.total_ms)} (${out.reference.records_per_s} records/s)`)
  if (init) console.log(`Repo.formatInitCommit:     ${fmt(init.ms)} (${init.blocks} blocks)`)
  console.log(`deleted every 7th (${del.deleted}): ${fmt(del.deleteMs)}, root ${out.deletions.root}, equals rebuild: ${del.selfConsistent}`)
  fs.writeFileSync(path.join(opts.out, `reference-${opts.n}.json`), JSON.stringify(out, null, 2) + '\n')
  if (!del.selfConsistent) process.exit(1)
}

// --- reading the Rust outputs ---
function readJsonFile(file, what) {
  if (!fs.existsSync(file)) throw new Error(`missing ${what}: ${file}`)
  const text = fs.readFileSync(file, 'utf8')
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new Error(`${what} (${file}) is not JSON: ${err.message}\n${text.slice(0, 500)}`)
  }
}
// `--stats` prints one JSON line to stderr; other log lines may be around it
function readStats(file) {
  if (!fs.existsSync(file)) throw new Error(`missing Rust stderr capture: ${file}`)
  const lines = fs.readFileSync(file, 'utf8').split('\n').reverse()
  for (const line of lines) {
    const t = line.trim()
    if (!t.startsWith('{')) continue
    try {
      const obj = JSON.parse(t)
      if (typeof obj.total_ms === 'number') return obj
    } catch {}
  }
  throw new Error(`no --stats JSON line (with total_ms) in ${file}`)
}

function decodeDidKey(did) {
  if (typeof did !== 'string' || !did.startsWith('did:key:z')) return null
  const bytes = base58btc.decode(did.slice('did:key:'.length))
  if (bytes[0] === 0xed && bytes[1] === 0x01 && bytes.length === 34) return { alg: 'ed25519', pub: bytes.slice(2) }
  if (bytes[0] === 0xe7 && bytes[1] === 0x01) return { alg: 'secp256k1' }
  if (bytes[0] === 0x80 && bytes[1] === 0x24) return { alg: 'p256' }
  return { alg: `unknown multicodec 0x${bytes[0].toString(16)}${bytes[1].toString(16)}` }
}

// Signature check. @atproto/crypto only knows p256 and secp256k1 (ES256/ES256K), so for an
// ed25519 did:key the reference cannot verify; we then check with @noble/curves' ed25519 over
// the reference's DAG-CBOR encoding of the unsigned commit (raw bytes, then sha256 of them).
async function checkSignature(commit) {
  const key = decodeDidKey(commit.did)
  if (!key) return { verified: false, method: `did ${commit.did} is not a did:key; nothing to verify against` }
  if (key.alg === 'secp256k1' || key.alg === 'p256') {
    const ok = await verifyCommitSig(commit, commit.did)
    return { verified: ok, method: `@atproto/repo verifyCommitSig (${key.alg})` }
  }
  if (key.alg !== 'ed25519') return { verified: false, method: `unsupported key: ${key.alg}` }
  const { sig, ...unsigned } = commit
  const msg = cborEncode(unsigned)
  if (ed25519.verify(sig, msg, key.pub)) {
    return { verified: true, method: 'ed25519 (@noble/curves) over DAG-CBOR of the unsigned commit; @atproto/crypto has no ed25519' }
  }
  if (ed25519.verify(sig, sha256(msg), key.pub)) {
    return { verified: true, method: 'ed25519 (@noble/curves) over sha256(DAG-CBOR of the unsigned commit); @atproto/crypto has no ed25519' }
  }
  return { verified: false, method: 'ed25519 (@noble/curves): signature does not verify over the unsigned commit bytes nor their sha256' }
}

async function readOurCar(carFile, items, ref, inspect) {
  const res = { ok: false, errors: [], notes: [] }
  const carBytes = fs.readFileSync(carFile)
  const t0 = performance.now()
  let car
  try {
    car = await readCarWithRoot(carBytes) // also checks every block's bytes against its CID
  } catch (err) {
    res.errors.push(`readCarWithRoot: ${err.message}`)
    return res
  }
  let verified
  try {
    // did checked, signature not (signingKey undefined): the reference has no ed25519 support
    verified = await verifyRepo(car.blocks, car.root, inspect.did, undefined)
  } catch (err) {
    res.errors.push(`verifyRepo: ${err.message}`)
    return res
  }
  res.read_ms = ms(t0)
  res.car_bytes = carBytes.byteLength
  res.car_blocks = car.blocks.size
  const storage = new MemoryBlockstore(car.blocks)
  const repo = await Repo.load(storage, car.root)
  const commit = repo.commit

  // commit fields
  const check = (cond, msg) => { if (!cond) res.errors.push(msg) }
  check(car.root.toString() === inspect.commit, `CAR root ${car.root} != inspect commit ${inspect.commit}`)
  check(commit.data.toString() === inspect.data, `commit.data ${commit.data} != inspect data ${inspect.data}`)
  check(commit.did === inspect.did, `commit.did ${commit.did} != inspect did ${inspect.did}`)
  check(commit.rev === inspect.rev, `commit.rev ${commit.rev} != inspect rev ${inspect.rev}`)
  check(commit.version === 3, `commit.version ${commit.version}`)
  check(commit.prev === null, `commit.prev is ${commit.prev}, expected null`)
  res.signature = await checkSignature(commit)
  check(res.signature.verified, `signature: ${res.signature.method}`)

  // records as the reference lists them (DataDiff against an empty repo = every leaf)
  const expected = new Map()
  for (let i = 0; i < items.length; i++) expected.set(ref.keys[i], ref.cids[i].toString())
  const listed = new Map()
  for (const c of verified.creates) listed.set(`${c.collection}/${c.rkey}`, c.cid.toString())
  res.records_listed = listed.size
  const diff = diffMaps(expected, listed)
  check(diff.count === 0, `records listed by the reference from our CAR differ from the reference build: ${diff.text}`)

  // walk in key order through the public API too, and sample 100 records for content
  const sampleIdx = new Set()
  for (let s = 0; s < Math.min(100, items.length); s++) sampleIdx.add(Math.floor((s * items.length) / Math.min(100, items.length)))
  sampleIdx.add(0)
  if (items.length > 3) sampleIdx.add(3) // the long string
  let compared = 0
  for (const i of sampleIdx) {
    const key = ref.keys[i]
    const [collection, rkey] = [items[i].collection, items[i].rkey]
    const got = await repo.getRecord(collection, rkey)
    if (got === null) { res.errors.push(`sample ${key}: missing`); continue }
    const want = jsonToLex(items[i].record)
    if (!lexEquals(got, want)) {
      res.errors.push(`sample ${key}: decoded content differs: ${JSON.stringify(lexToJson(got)).slice(0, 200)}`)
    }
    compared++
  }
  res.sample_compared = compared

  // block set: exactly commit + MST nodes + records, nothing missing or extra
  const mstNodeBlocks = await mstBlocks(ref.mst)
  const want = new Set([car.root.toString()])
  for (const c of mstNodeBlocks.cids()) want.add(c.toString())
  for (const c of ref.cids) want.add(c.toString())
  const have = new Set(car.blocks.cids().map((c) => c.toString()))
  const missing = [...want].filter((c) => !have.has(c))
  const extra = [...have].filter((c) => !want.has(c))
  res.mst_nodes = mstNodeBlocks.size
  res.block_set_equal = missing.length === 0 && extra.length === 0
  if (!res.block_set_equal) {
    res.notes.push(`CAR blocks vs commit+MST nodes+records: ${missing.length} missing, ${extra.length} extra`)
  }
  check(missing.length === 0, `CAR lacks ${missing.length} expected blocks, e.g. ${missing.slice(0, 3).join(', ')}`)
  res.car_block_order = describeOrder(carBytes, car.root.toString(), mstNodeBlocks, ref)
  res.ok = res.errors.length === 0
  return res
}

// block order of the CAR as written (informational)
function describeOrder(carBytes, root, mstNodes, ref) {
  const kinds = []
  const mstSet = new Set(mstNodes.cids().map((c) => c.toString()))
  const recSet = new Set(ref.cids.map((c) => c.toString()))
  let off = 0
  const readVarint = () => {
    let v = 0, shift = 0, b
    do { b = carBytes[off++]; v += (b & 0x7f) * 2 ** shift; shift += 7 } while (b & 0x80)
    return v
  }
  const h = readVarint(); off += h
  while (off < carBytes.length) {
    const len = readVarint()
    const cid = CID.decodeFirst(carBytes.subarray(off, off + len))[0].toString()
    off += len
    kinds.push(cid === root ? 'commit' : mstSet.has(cid) ? 'mst' : recSet.has(cid) ? 'record' : 'other')
  }
  const runs = []
  for (const k of kinds) {
    if (runs.length && runs[runs.length - 1][0] === k) runs[runs.length - 1][1]++
    else runs.push([k, 1])
  }
  const shown = runs.slice(0, 6).map(([k, c]) => `${k}×${c}`).join(', ')
  return runs.length > 6 ? `${shown}, … (${runs.length} runs)` : shown
}

function diffMaps(want, got) {
  const missing = [], extra = [], changed = []
  const changedKeys = []
  for (const [k, v] of want) {
    if (!got.has(k)) missing.push(k)
    else if (got.get(k) !== v) {
      changedKeys.push(k)
      changed.push(`${k}: want ${v} got ${got.get(k)}`)
    }
  }
  for (const k of got.keys()) if (!want.has(k)) extra.push(k)
  const count = missing.length + extra.length + changed.length
  const byCollection = {}
  for (const k of [...missing, ...extra, ...changedKeys]) {
    const coll = k.split('/')[0]
    byCollection[coll] = (byCollection[coll] ?? 0) + 1
  }
  const text = count === 0 ? 'none' :
    `${missing.length} missing, ${extra.length} extra, ${changed.length} different CIDs ` +
    `(by collection: ${JSON.stringify(byCollection)}); e.g. ${[...changed, ...missing, ...extra].slice(0, 3).join('; ')}`
  return { count, text, missing: missing.length, extra: extra.length, changed: changed.length }
}

async function compare(opts) {
  const n = opts.n
  const p = (f) => path.join(opts.out, f)
  const jsonl = p(`records-${n}.jsonl`)
  if (!fs.existsSync(jsonl)) throw new Error(`missing ${jsonl}: run --generate ${n} first (bench/run.sh does)`)
  // parse the same JSONL file the Rust side read (outside the timed scope on both sides; timed
  // here for the end-to-end figure)
  const tRead = performance.now()
  const items = fs.readFileSync(jsonl, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l))
  const readParseMs = ms(tRead)
  if (items.length !== n) throw new Error(`${jsonl} has ${items.length} lines, expected ${n}`)

  const rustStats = readStats(p(`rust-build-${n}.stderr`))
  const rustStatsMinus7 = fs.existsSync(p(`rust-build-${n}-minus7.stderr`)) ? readStats(p(`rust-build-${n}-minus7.stderr`)) : null
  const inspect = readJsonFile(p(`inspect-${n}.json`), 'guild repo inspect --json --records output')
  const inspectMinus7 = readJsonFile(p(`inspect-${n}-minus7.json`), 'guild repo inspect --json output (minus7)')

  const { keypair, did } = await newKeypair()
  const ref = await referenceBuild(items, keypair, did)
  // End to end, as `guild repo build` runs: read and parse the file, build, write the CAR
  // (commit, MST nodes, records).
  const tCar = performance.now()
  {
    const all = new BlockMap()
    all.set(ref.commitCid, ref.commitBytes)
    all.addMap(await mstBlocks(ref.mst))
    all.addMap(ref.blocks)
    fs.writeFileSync(p(`reference-${n}.car`), await blocksToCarFile(ref.commitCid, all))
  }
  const carWriteMs = ms(tCar)
  const refEndToEndMs = readParseMs + ref.timing.total_ms + carWriteMs
  const rustWall = fs.existsSync(p(`rust-wall-${n}.ms`)) ? Number(fs.readFileSync(p(`rust-wall-${n}.ms`), 'utf8').trim()) : null
  const del = await referenceDeletions(ref, items)
  let init = null
  if (opts.initCommit) init = await referenceInitCommit(items, keypair, did)

  const failures = []
  if (rustStats.records !== n) failures.push(`Rust --stats reports ${rustStats.records} records, expected ${n}`)
  const rootsEqual = ref.root.toString() === inspect.data
  if (!rootsEqual) failures.push(`MST root: reference ${ref.root} vs ours ${inspect.data}`)

  const want = new Map()
  for (let i = 0; i < items.length; i++) want.set(ref.keys[i], ref.cids[i].toString())
  const ours = new Map()
  for (const r of inspect.records ?? []) ours.set(r.path, r.cid)
  const recDiff = diffMaps(want, ours)
  const recordCidsEqual = recDiff.count === 0 && inspect.count === n
  if (!recordCidsEqual) failures.push(`record CIDs: ${recDiff.text}; inspect count ${inspect.count}`)
  // inspect must list records in MST (key) order
  const paths = (inspect.records ?? []).map((r) => r.path)
  const sortedPaths = [...paths].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const inspectSorted = paths.every((v, i) => v === sortedPaths[i])

  const deletionsRootEqual = del.root.toString() === inspectMinus7.data && del.selfConsistent
  if (!deletionsRootEqual) {
    failures.push(`deletions: reference after deleting every 7th ${del.root} (rebuild ${del.freshRoot}) vs ours (reduced set) ${inspectMinus7.data}`)
  }
  if (typeof inspectMinus7.count === 'number' && inspectMinus7.count !== n - del.deleted) {
    failures.push(`minus7 inspect count ${inspectMinus7.count}, expected ${n - del.deleted}`)
  }

  const carRead = await readOurCar(p(`repo-${n}.car`), items, ref, inspect)
  if (!carRead.ok) failures.push(...carRead.errors.map((e) => `reading our CAR: ${e}`))

  const rustMs = rustStats.total_ms
  const refMs = ref.timing.total_ms
  const summary = {
    n,
    rust: {
      ...rustStats,
      records_per_s: rate(n, rustMs),
    },
    reference: {
      ...ref.timing,
      records_per_s: rate(n, refMs),
      format_init_commit_ms: init?.ms ?? null,
      delete_every_7th_ms: del.deleteMs,
      package: '@atproto/repo@' + JSON.parse(fs.readFileSync(path.join(HERE, 'node_modules/@atproto/repo/package.json'), 'utf8')).version,
      node: process.version,
    },
    ratio: rustMs > 0 ? refMs / rustMs : null,
    end_to_end: {
      reference_ms: refEndToEndMs,
      reference_read_parse_ms: readParseMs,
      reference_car_write_ms: carWriteMs,
      rust_process_ms: rustWall,
      ratio: rustWall > 0 ? refEndToEndMs / rustWall : null,
    },
    roots_equal: rootsEqual,
    record_cids_equal: recordCidsEqual,
    deletions_root_equal: deletionsRootEqual,
    reference_reads_our_car: carRead.ok,
    signature: carRead.signature ?? null,
    details: {
      reference_root: ref.root.toString(),
      our_root: inspect.data,
      our_commit: inspect.commit,
      our_did: inspect.did,
      our_rev: inspect.rev,
      deleted: del.deleted,
      reference_root_after_deletions: del.root.toString(),
      our_root_minus7: inspectMinus7.data,
      rust_minus7_stats: rustStatsMinus7,
      inspect_records_in_key_order: inspectSorted,
      car: {
        bytes: carRead.car_bytes, blocks: carRead.car_blocks, mst_nodes: carRead.mst_nodes,
        block_set_equal: carRead.block_set_equal, block_order: carRead.car_block_order,
        records_listed: carRead.records_listed, sample_records_compared: carRead.sample_compared,
        read_ms: carRead.read_ms, notes: carRead.notes,
      },
    },
    failures,
  }
  fs.writeFileSync(p(`compare-${n}.json`), JSON.stringify(summary, null, 2) + '\n')

  const pad = (s) => s.padEnd(28)
  console.log(`\n=== Guild vs @atproto/repo, N = ${n} ===`)
  console.log(`${pad('Rust total')}${fmt(rustMs)} (${summary.rust.records_per_s} records/s)  [encode ${fmt(rustStats.encode_ms)}, mst ${fmt(rustStats.mst_ms)}, commit ${fmt(rustStats.commit_ms)}]`)
  console.log(`${pad('reference total')}${fmt(refMs)} (${summary.reference.records_per_s} records/s)  [encode ${fmt(ref.timing.encode_ms)}, mst ${fmt(ref.timing.mst_ms)}, commit ${fmt(ref.timing.commit_ms)}]`)
  if (init) console.log(`${pad('reference formatInitCommit')}${fmt(init.ms)} (whole init-commit path incl. collecting blocks)`)
  console.log(`${pad('ratio (reference / Rust)')}${summary.ratio === null ? 'n/a' : summary.ratio.toFixed(2) + 'x'}`)
  const e2e = summary.end_to_end
  console.log(`${pad('e2e reference')}${fmt(e2e.reference_ms)} (read + JSON.parse ${fmt(readParseMs)}, build, CAR write ${fmt(carWriteMs)})`)
  console.log(`${pad('e2e guild repo build')}${e2e.rust_process_ms === null ? 'n/a (no rust-wall file)' : fmt(e2e.rust_process_ms) + ' (the whole process)'}`)
  console.log(`${pad('e2e ratio')}${e2e.ratio === null ? 'n/a' : e2e.ratio.toFixed(2) + 'x'}`)
  console.log(`${pad('roots equal')}${rootsEqual}`)
  console.log(`${pad('record cids equal')}${recordCidsEqual}`)
  console.log(`${pad('deletions root equal')}${deletionsRootEqual}  (${del.deleted} deleted)`)
  console.log(`${pad('reference reads our CAR')}${carRead.ok}  (signature: ${carRead.signature ? `${carRead.signature.verified}, ${carRead.signature.method}` : 'n/a'})`)
  console.log(`${pad('CAR block order')}${carRead.car_block_order ?? 'n/a'}`)
  if (failures.length) {
    console.log('\nFAILURES:')
    for (const f of failures) console.log(`  - ${f}`)
  }
  console.log(`\nwritten ${p(`compare-${n}.json`)}`)
  if (failures.length) process.exit(1)
}

// Stand-ins for the Rust outputs, made with the reference and an ed25519 did:key, in the formats
// run.sh expects. Only for testing this script while the Rust binary does not exist.
async function fakeRust(opts) {
  const n = opts.n
  const p = (f) => path.join(opts.out, f)
  const seed = sha256(Buffer.from('guild-bench-fake-key'))
  const pub = ed25519.getPublicKey(seed)
  const did = 'did:key:' + base58btc.encode(Uint8Array.from([0xed, 0x01, ...pub]))
  const edKeypair = { sign: async (msg) => ed25519.sign(msg, seed) }
  for (const [suffix, withRecords] of [['', true], ['-minus7', false]]) {
    const items = fs.readFileSync(p(`records-${n}${suffix}.jsonl`), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    const ref = await referenceBuild(items, edKeypair, did)
    fs.writeFileSync(p(`rust-build-${n}${suffix}.stderr`), 'fake: built with the reference\n' +
      JSON.stringify({ records: items.length, ...ref.timing }) + '\n')
    const all = new BlockMap()
    all.set(ref.commitCid, ref.commitBytes)
    all.addMap(await mstBlocks(ref.mst))
    all.addMap(ref.blocks)
    fs.writeFileSync(p(`repo-${n}${suffix}.car`), await blocksToCarFile(ref.commitCid, all))
    const inspect = {
      did, rev: ref.commit.rev, commit: ref.commitCid.toString(), data: ref.root.toString(), count: items.length,
    }
    if (withRecords) {
      inspect.records = ref.keys.map((k, i) => ({ path: k, cid: ref.cids[i].toString() }))
        .sort((a, b) => (a.path < b.path ? -1 : 1))
    }
    fs.writeFileSync(p(`inspect-${n}${suffix}.json`), JSON.stringify(inspect) + '\n')
  }
  console.log(`fake Rust outputs written to ${opts.out}`)
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  if (opts.mode === 'reference-only') return referenceOnly(opts)
  if (opts.mode === 'generate') {
    const t0 = performance.now()
    const files = writeRecordFiles(opts, generate(opts.n, opts.plain))
    console.log(`wrote ${files.full} (${opts.n}) and ${files.minus7} (${files.kept}) in ${fmt(ms(t0))}`)
    return
  }
  if (opts.mode === 'compare') return compare(opts)
  if (opts.mode === 'fake-rust') return fakeRust(opts)
}

main().catch((err) => {
  console.error(err?.stack ?? String(err))
  process.exit(1)
})
