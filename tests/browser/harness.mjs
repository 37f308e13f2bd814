// Test harness: the real shardcast binary on free loopback ports, Debian's Chromium driven by
// playwright-core, pages of the web client, and polling helpers (no fixed sleeps: every wait is a
// condition with a deadline).
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import net from 'node:net';
import dgram from 'node:dgram';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..', '..');
export const artifactsDir = join(here, 'artifacts');

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const targetDir = resolve(repoRoot, process.env.CARGO_TARGET_DIR || 'target');
export const SERVER_BIN = process.env.SHARDCAST_BIN || join(targetDir, 'debug', 'shardcast');
export const WEB_ROOT = process.env.SHARDCAST_WEB_ROOT || join(repoRoot, 'tools', 'web', 'dist');

// Flags from the issue / the machine notes: fake camera and microphone, loopback ICE candidates
// without mDNS, the self-signed certificate accepted, no background traffic to the (closed) network.
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--ignore-certificate-errors',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--autoplay-policy=no-user-gesture-required',
  // Keep background pages' timers and media running at full rate (several pages, one browser).
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

export function log(...args) {
  const t = new Date().toISOString().slice(11, 23);
  console.log(`[${t}]`, ...args);
}

// ---------------------------------------------------------------------------------------------
// Waiting.

/**
 * Polls `fn` until it returns a truthy value, which is returned. On timeout throws an error that
 * says what was awaited and the last value seen (`describe(last)`), so failures carry evidence.
 */
export async function waitFor(what, fn, { timeout = 60_000, interval = 250, describe } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await fn();
      lastError = undefined;
      if (last) return last;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      let detail = '';
      try {
        detail = describe ? await describe(last) : JSON.stringify(last);
      } catch (e) {
        detail = `(describe failed: ${e.message})`;
      }
      const err = new Error(
        `timed out after ${timeout} ms waiting for ${what}` +
          (lastError ? `; last error: ${lastError.message}` : '') +
          (detail ? `; last seen: ${detail}` : ''),
      );
      throw err;
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

// ---------------------------------------------------------------------------------------------
// Ports and the server.

function tcpFree(port, host) {
  return new Promise((resolvePromise) => {
    const srv = net.createServer();
    srv.once('error', () => resolvePromise(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolvePromise(true)));
  });
}

function udpFree(port, host) {
  return new Promise((resolvePromise) => {
    const sock = dgram.createSocket('udp4');
    sock.once('error', () => {
      sock.close();
      resolvePromise(false);
    });
    sock.bind({ port, address: host, exclusive: true }, () => sock.close(() => resolvePromise(true)));
  });
}

/** A TCP port for the listener and a base port with `count` consecutive free udp+tcp ports. */
export async function freePorts(count) {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const listen = base + 100 + Math.floor(Math.random() * 100);
    let ok = await tcpFree(listen, '127.0.0.1');
    for (let i = 0; ok && i < count; i++) {
      ok = (await tcpFree(base + i, '0.0.0.0')) && (await udpFree(base + i, '0.0.0.0'));
    }
    if (ok) return { listen, rtcBase: base };
  }
  throw new Error('no free ports found');
}

function httpGet(url) {
  return new Promise((resolvePromise, reject) => {
    const req = (url.startsWith('https:') ? httpsRequest : httpRequest)(
      url,
      { rejectUnauthorized: false, timeout: 5000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolvePromise({ status: res.statusCode, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

export class Server {
  constructor({ shards = 2, tls = true, extraArgs = [] } = {}) {
    this.shards = shards;
    this.tls = tls;
    this.extraArgs = extraArgs;
    this.proc = null;
    this.exited = null;
    this.logPath = join(artifactsDir, 'server.log');
  }

  get origin() {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.ports.listen}`;
  }

  async start() {
    if (!existsSync(SERVER_BIN)) {
      throw new Error(`server binary ${SERVER_BIN} not found: run cargo build --bin shardcast first`);
    }
    if (!existsSync(join(WEB_ROOT, 'index.html')) || !existsSync(join(WEB_ROOT, 'app.js'))) {
      throw new Error(`web client not built in ${WEB_ROOT}: run npm ci && npm run build in tools/web`);
    }
    mkdirSync(artifactsDir, { recursive: true });
    this.ports = await freePorts(this.shards);
    const args = [
      '--listen',
      `127.0.0.1:${this.ports.listen}`,
      '--rtc-ip',
      '127.0.0.1',
      '--rtc-port',
      String(this.ports.rtcBase),
      '--shards',
      String(this.shards),
      '--web-root',
      WEB_ROOT,
      '--no-pin',
      ...(this.tls ? [] : ['--no-tls']),
      ...this.extraArgs,
    ];
    log(`starting ${SERVER_BIN} ${args.join(' ')}`);
    const out = createWriteStream(this.logPath);
    this.proc = spawn(SERVER_BIN, args, {
      env: { ...process.env, RUST_LOG: process.env.SHARDCAST_LOG || process.env.RUST_LOG || 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc.stdout.pipe(out);
    this.proc.stderr.pipe(out);
    this.exited = new Promise((r) => this.proc.once('exit', (code, signal) => r({ code, signal })));
    let exitInfo = null;
    this.exited.then((e) => (exitInfo = e));
    await waitFor(
      'the server to answer /health',
      async () => {
        if (exitInfo) throw new Error(`server exited early: ${JSON.stringify(exitInfo)}`);
        const res = await httpGet(`${this.origin}/health`);
        return res.status === 200;
      },
      { timeout: 60_000, interval: 200, describe: () => this.logTail(20) },
    );
    log(`server up at ${this.origin} (rtc ports ${this.ports.rtcBase}..${this.ports.rtcBase + this.shards - 1})`);
  }

  logTail(lines = 40) {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no server log)';
    }
  }

  async metrics() {
    const res = await httpGet(`${this.origin}/metrics`);
    return res.body;
  }

  /** The non-zero drop counters (by shard and reason) from /metrics. */
  async drops() {
    const text = await this.metrics();
    return text
      .split('\n')
      .filter((l) => /drop/i.test(l) && !l.startsWith('#') && !/\s0$/.test(l))
      .join('\n');
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Browser and pages.

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: install it (apt-get install -y chromium) — this is a failure, not a skip`,
    );
  }
  // playwright-core gives every launch a fresh, empty --user-data-dir of its own.
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 120_000 });
}

// Runs in every page before its scripts: collect the RTCPeerConnections the client creates, and a
// getStats() digest of all of them.
const INIT_SCRIPT = `(() => {
  const Native = window.RTCPeerConnection;
  const pcs = [];
  window.__pcs = pcs;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); pcs.push(this); }
  };
  window.__pageStats = async () => {
    const inbound = [];
    const outbound = [];
    const transports = [];
    for (const pc of pcs) {
      if (pc.connectionState === 'closed') continue;
      const report = await pc.getStats();
      for (const s of report.values()) {
        if (s.type === 'inbound-rtp') {
          inbound.push({ ssrc: s.ssrc, kind: s.kind, mid: s.mid, packetsReceived: s.packetsReceived,
            bytesReceived: s.bytesReceived, packetsLost: s.packetsLost, framesDecoded: s.framesDecoded,
            framesReceived: s.framesReceived, keyFramesDecoded: s.keyFramesDecoded, nackCount: s.nackCount,
            pliCount: s.pliCount, retransmittedPacketsReceived: s.retransmittedPacketsReceived,
            trackIdentifier: s.trackIdentifier });
        } else if (s.type === 'outbound-rtp') {
          outbound.push({ ssrc: s.ssrc, kind: s.kind, rid: s.rid, packetsSent: s.packetsSent,
            framesEncoded: s.framesEncoded, frameWidth: s.frameWidth, active: s.active,
            qualityLimitationReason: s.qualityLimitationReason, pliCount: s.pliCount, nackCount: s.nackCount });
        } else if (s.type === 'transport') {
          transports.push({ srtpCipher: s.srtpCipher, dtlsCipher: s.dtlsCipher, dtlsRole: s.dtlsRole,
            dtlsState: s.dtlsState, iceState: s.iceState, tlsVersion: s.tlsVersion });
        }
      }
    }
    const sc = window.shardcast;
    const consumers = {};
    if (sc) {
      for (const [id, info] of Object.entries(sc.consumerInfo)) {
        const c = sc.consumers[id] || sc.closedConsumers[id];
        const rtp = inbound.find((s) => s.ssrc === info.ssrc) || null;
        consumers[id] = { ...info, trackState: c ? c.track.readyState : 'unknown',
          packetsReceived: rtp ? rtp.packetsReceived : 0, framesDecoded: rtp ? rtp.framesDecoded || 0 : 0,
          rtp };
      }
    }
    return { inbound, outbound, transports, consumers };
  };
})();`;

export class TestPage {
  constructor(page, context, { name, roomId }) {
    this.page = page;
    this.context = context;
    this.name = name;
    this.roomId = roomId;
    this.errors = [];
    this.console = [];
    page.on('pageerror', (e) => this.errors.push(String(e)));
    page.on('console', (m) => {
      this.console.push(`${m.type()}: ${m.text()}`);
      if (this.console.length > 500) this.console.shift();
    });
  }

  evaluate(fn, arg) {
    return this.page.evaluate(fn, arg);
  }

  /** shardcast state digest: status, peers, consumers with their page-side counters. */
  async stats() {
    return this.page.evaluate(() => window.__pageStats());
  }

  async state() {
    return this.page.evaluate(() => {
      const s = window.shardcast;
      return {
        status: s.status,
        error: s.error,
        peerId: s.peerId,
        displayName: s.displayName,
        peers: s.peers,
        closedPeers: s.closedPeers,
        consumerInfo: s.consumerInfo,
        producers: Object.values(s.producers).map((p) => ({ id: p.id, kind: p.kind, paused: p.paused })),
        notifications: s.notifications.filter((n) => !['activeSpeaker', 'downlinkBwe'].includes(n.method)),
      };
    });
  }

  async peerId() {
    return this.page.evaluate(() => window.shardcast.peerId);
  }

  /** Consumers (with page-side counters) of `producerPeerId`'s media, by kind. */
  async consumersOf(producerPeerId) {
    const { consumers } = await this.stats();
    const out = {};
    for (const c of Object.values(consumers)) {
      if (c.peerId === producerPeerId && !c.closed) out[c.kind] = c;
    }
    return out;
  }

  async close() {
    await this.context.close();
  }
}

export async function openPage(browser, server, { name, roomId, query = {} }) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  await context.addInitScript(INIT_SCRIPT);
  const page = await context.newPage();
  const tp = new TestPage(page, context, { name, roomId });
  const params = new URLSearchParams({ roomId, displayName: name, ...query });
  const url = `${server.origin}/?${params}`;
  log(`${name}: opening ${url}`);
  await page.goto(url, { timeout: 60_000 });
  await waitFor(
    `${name} to join and produce mic + webcam`,
    () =>
      page.evaluate(() => {
        const s = window.shardcast;
        if (s.status === 'failed') throw new Error(`page failed: ${s.error}`);
        return s.status === 'joined' && s.mic && s.webcam;
      }),
    { timeout: 90_000, describe: () => page.evaluate(() => JSON.stringify({ status: window.shardcast.status, error: window.shardcast.error })) },
  );
  log(`${name}: joined as ${await tp.peerId()}`);
  return tp;
}

export function saveArtifact(name, content) {
  mkdirSync(artifactsDir, { recursive: true });
  writeFileSync(join(artifactsDir, name), typeof content === 'string' ? content : JSON.stringify(content, null, 2));
}
