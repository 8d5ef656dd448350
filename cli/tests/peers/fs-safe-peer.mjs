// A peer that speaks the reference's protocol through the reference's own
// lock engine: the npm package @openclaw/fs-safe (its `file-lock` API),
// configured the way OpenClaw's session write lock configures it (stale
// 30 min, retry every 50 ms, "remove-if-unchanged" stale recovery guarded
// by `<lock>.reclaim`, reclaim of dead and recycled pids, payload-less
// files only after a 5 s grace). Used by cli/tests/interop.rs; the package is
// installed from npm by cli/tests/interop.rs (its folder is passed in SESSION_LOCK_FS_SAFE).
//
// usage: node fs-safe-peer.mjs TRANSCRIPT MARKER ID (count N | for MS) [hold-ms H]
// Each section: acquire, exclusive-create MARKER (an overlap if it exists),
// append "ID SEQ ref" to TRANSCRIPT, hold H ms, remove MARKER, release.
// Prints "sections N waited-ms W max-wait-ms M" at the end; exit 99 on an
// overlap, 3 on a lock timeout.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const root = process.env.SESSION_LOCK_FS_SAFE;
if (!root) {
  console.error("SESSION_LOCK_FS_SAFE must name the folder holding node_modules/@openclaw/fs-safe");
  process.exit(2);
}
const require = createRequire(path.join(root, "package.json"));
const { createFileLockManager } = await import(require.resolve("@openclaw/fs-safe/file-lock"));

const [transcript, marker, id, mode, amount, holdFlag, holdArg] = process.argv.slice(2);
const holdMs = holdFlag === "hold-ms" ? Number(holdArg) : 0;
const STALE_MS = 30 * 60 * 1000;
const ORPHAN_GRACE_MS = 5000;

function startTime(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(text.slice(text.lastIndexOf(")") + 2).split(" ")[19]);
  } catch {
    return null;
  }
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return e.code === "EPERM"; // EPERM means alive
  }
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    return !/^State:\s+Z/m.test(status);
  } catch {
    return true;
  }
}

// The reference's reasons, condensed: missing/dead/recycled pid; malformed
// records only once older than the orphan grace (by mtime).
function reclaimable(lockPath, payload) {
  const pid = payload && Number.isInteger(payload.pid) && payload.pid > 0 ? payload.pid : null;
  if (pid === null) {
    try {
      return Date.now() - fs.statSync(lockPath).mtimeMs > Math.min(STALE_MS, ORPHAN_GRACE_MS);
    } catch (e) {
      return e.code !== "ENOENT";
    }
  }
  if (!pidAlive(pid)) return true;
  if (Number.isInteger(payload.starttime)) {
    const now = startTime(pid);
    if (now !== null && now !== payload.starttime) return true;
  }
  return false;
}

const manager = createFileLockManager("openclaw.session-write-lock");
const options = {
  staleMs: STALE_MS,
  timeoutMs: 120_000,
  retry: { minTimeout: 50, maxTimeout: 1000, factor: 1 },
  staleRecovery: "remove-if-unchanged",
  payload: () => ({
    pid: process.pid,
    createdAt: new Date().toISOString(),
    maxHoldMs: 300_000,
    starttime: startTime(process.pid) ?? undefined,
  }),
  shouldReclaim: async ({ lockPath, payload }) => {
    await new Promise((r) => setImmediate(r));
    return reclaimable(lockPath, payload);
  },
  shouldRemoveStaleLock: async ({ lockPath, payload }) => {
    await new Promise((r) => setImmediate(r));
    return reclaimable(lockPath, payload);
  },
};

// Loaded and about to ask for the lock: the test may now kill the holder.
console.log("ready");
const deadline = mode === "for" ? Date.now() + Number(amount) : Infinity;
const count = mode === "count" ? Number(amount) : Infinity;
let seq = 0;
let waited = 0;
let maxWait = 0;
while (seq < count && Date.now() < deadline) {
  const asked = Date.now();
  let handle;
  try {
    handle = await manager.acquire(transcript, {
      ...options,
      timeoutMs: Math.max(1, Math.min(options.timeoutMs, deadline - asked)),
    });
  } catch (e) {
    if (mode === "for" && Date.now() >= deadline) break;
    console.error(`peer ${id}: ${e.code ?? ""} ${e.message}`);
    process.exit(3);
  }
  const w = Date.now() - asked;
  waited += w;
  maxWait = Math.max(maxWait, w);
  try {
    fs.closeSync(fs.openSync(marker, "wx"));
  } catch (e) {
    console.error(`OVERLAP: peer ${id} found ${marker} (${e.code})`);
    process.exit(99);
  }
  fs.appendFileSync(transcript, `${id} ${seq} ref\n`);
  if (holdMs > 0) await new Promise((r) => setTimeout(r, holdMs));
  fs.rmSync(marker);
  await handle.release();
  seq += 1;
}
console.log(`sections ${seq} waited-ms ${waited} max-wait-ms ${maxWait}`);
