// End-to-end tests: the real shardcast binary serving the web client (tools/web/dist) over HTTPS/WSS,
// Debian's headless Chromium with fake camera and microphone, results from RTCPeerConnection.getStats().
//
// Run through tools/browser-test.sh (installs, builds, runs), or: node --test browser.test.mjs
// Environment: CARGO_TARGET_DIR (server binary in $CARGO_TARGET_DIR/debug/shardcast, default target/),
// CHROMIUM (default /usr/bin/chromium), SHARDCAST_LOG (server RUST_LOG, default info),
// SHARDCAST_PAGE_QUERY (extra page URL parameters for every page, e.g. "numSimulcastStreams=1").
import { after, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  Server,
  launchBrowser,
  log,
  openPage,
  saveArtifact,
  waitFor,
} from './harness.mjs';

// The webcam is captured at 640x480 (not the demo's 1280x720) to spare the 2 CPU cores that three
// Chromium pages share; everything else is the demo's: mic + webcam with 3 simulcast encodings.
// At 640x480 Chrome sends only r0 (160x120) and r1 (320x240) of the three (libwebrtc's simulcast
// layer limit for that size; at 1280x720 its bandwidth estimate usually holds r2 back too), so the
// SFU has to forward the best layer that exists, as mediasoup does.
const BASE_QUERY = { webcamRes: 'vga', ...Object.fromEntries(new URLSearchParams(process.env.SHARDCAST_PAGE_QUERY || '')) };

// Chrome 156 names them SRTP_AEAD_AES_256_GCM and SRTP_AES128_CM_HMAC_SHA1_80; also accept
// BoringSSL's SRTP_AES128_CM_SHA1_80 and the RFC names (AEAD_AES_256_GCM, AES_CM_128_HMAC_SHA1_80).
const GCM = /^(SRTP_)?AEAD_AES_(128|256)_GCM$/;
const AES_CM = /^(SRTP_AES128_CM_(HMAC_)?SHA1_80|AES_CM_128_HMAC_SHA1_80)$/;

const FIRST_MEDIA_TIMEOUT = 90_000;
const RISE_TIMEOUT = 60_000;

let server;
let browser;
let setupError = null;
const pages = {};
const results = [];

function record(check, detail) {
  results.push({ check, ...detail });
  log(`CHECK ${check}: ${JSON.stringify(detail)}`);
}

async function evidence(extra = {}) {
  const out = { ...extra };
  try {
    out.serverDrops = await server.drops();
  } catch (e) {
    out.serverDrops = `(metrics failed: ${e.message})`;
  }
  return JSON.stringify(out);
}

/** Waits until `page`'s consumer of `producerPage`'s `kind` has `field` > 0, then rises by `delta`. */
async function expectRising(page, producerPage, kind, field, delta, timeout = RISE_TIMEOUT) {
  const producerPeerId = await producerPage.peerId();
  const what = `${page.name}: ${kind} ${field} from ${producerPage.name}`;
  const describeState = async () =>
    evidence({
      receiver: (await page.stats()).consumers,
      receiverTransports: (await page.stats()).transports,
      senderOutbound: (await producerPage.stats()).outbound,
      senderTransports: (await producerPage.stats()).transports,
    });
  const first = await waitFor(
    `${what} > 0`,
    async () => {
      const c = (await page.consumersOf(producerPeerId))[kind];
      return c && c[field] > 0 ? c : null;
    },
    { timeout: Math.max(timeout, FIRST_MEDIA_TIMEOUT), describe: describeState },
  );
  const base = first[field];
  const later = await waitFor(
    `${what} to rise by ${delta} from ${base}`,
    async () => {
      const c = (await page.consumersOf(producerPeerId))[kind];
      return c && c[field] >= base + delta ? c : null;
    },
    { timeout, describe: describeState },
  );
  return { consumerId: first.id, from: base, to: later[field] };
}

/**
 * Waits until `field` of `page`'s consumer of `producerPage`'s `kind` stops moving (two samples a
 * second apart are equal), then watches it for `windowMs` and fails if it moves.
 */
async function expectFrozen(page, producerPage, kind, field, windowMs = 3000) {
  const producerPeerId = await producerPage.peerId();
  const read = async () => {
    const c = (await page.consumersOf(producerPeerId))[kind];
    return c ? c[field] : undefined;
  };
  let prev;
  const settled = await waitFor(
    `${page.name}: ${kind} ${field} from ${producerPage.name} to stop`,
    async () => {
      const v = await read();
      const ok = prev !== undefined && v === prev;
      prev = v;
      return ok ? { value: v } : null;
    },
    { timeout: 30_000, interval: 1000 },
  );
  const end = Date.now() + windowMs;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 500));
    const v = await read();
    assert.equal(v, settled.value, `${page.name}: ${kind} ${field} moved while paused (${settled.value} -> ${v})`);
  }
  return settled.value;
}

async function waitNotification(page, method, match, timeout = 30_000) {
  return waitFor(
    `${page.name} to get ${method} ${JSON.stringify(match)}`,
    () =>
      page.evaluate(
        ({ method, match }) =>
          window.shardcast.notifications.find(
            (n) => n.method === method && Object.entries(match).every(([k, v]) => n.data[k] === v),
          ) || null,
        { method, match },
      ),
    { timeout, describe: async () => JSON.stringify((await page.state()).notifications.map((n) => n.method)) },
  );
}

async function ciphers(page) {
  const { transports } = await page.stats();
  return transports;
}

/** Server getConsumerStats (through the page's protoo peer) vs the page's own count, ±10%. */
async function compareConsumerStats(page, consumerId, label) {
  const pageSide = (await page.stats()).consumers[consumerId];
  const serverStats = await page.evaluate(
    (id) => window.shardcast.request('getConsumerStats', { consumerId: id }),
    consumerId,
  );
  const outbound = serverStats.find((s) => s.type === 'outbound-rtp');
  assert.ok(outbound, `getConsumerStats has an outbound-rtp entry: ${JSON.stringify(serverStats)}`);
  const server = outbound.packetCount;
  const browserCount = pageSide.packetsReceived;
  const diff = Math.abs(server - browserCount) / Math.max(server, browserCount, 1);
  record(`getConsumerStats ${label}`, { server, browser: browserCount, diffPct: +(diff * 100).toFixed(2) });
  assert.ok(server > 0 && browserCount > 0, `both counts positive: server ${server}, browser ${browserCount}`);
  assert.ok(diff <= 0.1, `server packetCount ${server} vs browser packetsReceived ${browserCount}: ${(diff * 100).toFixed(1)}% apart`);
}

describe('shardcast in headless Chromium', { concurrency: 1 }, () => {
  // Setup is the first test (not a hook), so that a missing Chromium or a server that does not
  // start shows up as failed tests, never as skipped or cancelled ones.
  beforeEach(() => {
    if (setupError) throw new Error(`setup failed: ${setupError.message}`);
  });

  after(async () => {
    try {
      const state = {};
      for (const [name, p] of Object.entries(pages)) {
        try {
          state[name] = { state: await p.state(), stats: await p.stats(), errors: p.errors, console: p.console.slice(-100) };
        } catch (e) {
          state[name] = `(closed: ${e.message})`;
        }
      }
      saveArtifact('pages.json', state);
      if (server) saveArtifact('metrics.txt', await server.metrics().catch((e) => String(e)));
      saveArtifact('results.json', results);
    } finally {
      if (browser) await browser.close().catch(() => {});
      if (server) await server.stop();
    }
  });

  it('starts the server and Chromium, and serves the web client over HTTPS', async () => {
    try {
      server = new Server({ shards: 2 });
      await server.start();
      browser = await launchBrowser();
      log(`chromium ${browser.version()}`);
    } catch (error) {
      setupError = error;
      throw error;
    }
    const p = await openPage(browser, server, { name: 'alice', roomId: 'room-main', query: { ...BASE_QUERY, srtp: 'gcm' } });
    pages.alice = p;
    const title = await p.page.title();
    assert.equal(title, 'Shardcast');
  });

  it('two pages in one room decode each other\'s video and receive each other\'s audio', async () => {
    pages.bob = await openPage(browser, server, { name: 'bob', roomId: 'room-main', query: { ...BASE_QUERY, srtp: 'gcm' } });
    const { alice, bob } = pages;
    for (const [rx, tx] of [[alice, bob], [bob, alice]]) {
      const video = await expectRising(rx, tx, 'video', 'framesDecoded', 20);
      record(`${rx.name} video from ${tx.name}`, video);
      const audio = await expectRising(rx, tx, 'audio', 'packetsReceived', 50);
      record(`${rx.name} audio from ${tx.name}`, audio);
    }
    // Each page shows the other with its display name.
    for (const [rx, tx] of [[alice, bob], [bob, alice]]) {
      const txId = await tx.peerId();
      const label = await rx.page.locator(`.tile[data-peer-id="${txId}"] .name`).textContent();
      assert.equal(label, tx.name);
    }
  });

  it('srtp=gcm (the default roles) negotiates an AEAD GCM profile', async () => {
    for (const p of [pages.alice, pages.bob]) {
      const t = await ciphers(p);
      record(`${p.name} srtp`, { transports: t.map((x) => `${x.srtpCipher} dtls-${x.dtlsRole}`) });
      assert.equal(t.length, 2, 'send and recv transports');
      for (const x of t) assert.match(x.srtpCipher, GCM);
    }
  });

  it('a third page joins late and receives both; the others receive it', async () => {
    pages.carol = await openPage(browser, server, { name: 'carol', roomId: 'room-main', query: BASE_QUERY });
    const { alice, bob, carol } = pages;
    for (const [rx, tx] of [[carol, alice], [carol, bob], [alice, carol], [bob, carol]]) {
      const video = await expectRising(rx, tx, 'video', 'framesDecoded', 20);
      record(`${rx.name} video from ${tx.name}`, video);
      const audio = await expectRising(rx, tx, 'audio', 'packetsReceived', 50);
      record(`${rx.name} audio from ${tx.name}`, audio);
    }
  });

  it('pausing the webcam producer pauses its consumers (no new frames); resuming brings frames back', async () => {
    const { alice, bob, carol } = pages;
    const aliceId = await alice.peerId();
    await alice.evaluate(() => window.shardcast.pauseProducer('webcam'));
    for (const rx of [bob, carol]) {
      const videoConsumer = (await rx.consumersOf(aliceId)).video;
      await waitNotification(rx, 'consumerPaused', { consumerId: videoConsumer.id });
      const frozenAt = await expectFrozen(rx, alice, 'video', 'framesDecoded');
      record(`${rx.name} video from alice frozen while paused`, { framesDecoded: frozenAt });
    }
    // While the counts stand still, the server's consumer stats must match what the page got.
    const bobVideo = (await bob.consumersOf(aliceId)).video;
    await compareConsumerStats(bob, bobVideo.id, 'bob video from alice (paused, stable)');

    await alice.evaluate(() => window.shardcast.resumeProducer('webcam'));
    for (const rx of [bob, carol]) {
      const videoConsumer = (await rx.consumersOf(aliceId)).video;
      await waitNotification(rx, 'consumerResumed', { consumerId: videoConsumer.id });
      const video = await expectRising(rx, alice, 'video', 'framesDecoded', 20);
      record(`${rx.name} video from alice after resume`, video);
    }
  });

  it('muting the mic pauses the audio consumers; unmuting resumes them', async () => {
    const { alice, bob, carol } = pages;
    const aliceId = await alice.peerId();
    await alice.evaluate(() => window.shardcast.muteMic());
    for (const rx of [bob, carol]) {
      const audioConsumer = (await rx.consumersOf(aliceId)).audio;
      await waitNotification(rx, 'consumerPaused', { consumerId: audioConsumer.id });
      const frozenAt = await expectFrozen(rx, alice, 'audio', 'packetsReceived');
      record(`${rx.name} audio from alice frozen while muted`, { packetsReceived: frozenAt });
    }
    const bobAudio = (await bob.consumersOf(aliceId)).audio;
    await compareConsumerStats(bob, bobAudio.id, 'bob audio from alice (muted, stable)');
    await alice.evaluate(() => window.shardcast.unmuteMic());
    for (const rx of [bob, carol]) {
      const audio = await expectRising(rx, alice, 'audio', 'packetsReceived', 50);
      record(`${rx.name} audio from alice after unmute`, audio);
    }
  });

  it('server getConsumerStats matches the page\'s packet counts while media flows (±10%)', async () => {
    const { alice, carol } = pages;
    const aliceId = await alice.peerId();
    const c = await carol.consumersOf(aliceId);
    // Live counts move while the two sides are read; audio (50 packets/s) and video both.
    await compareConsumerStats(carol, c.audio.id, 'carol audio from alice (live)');
    await compareConsumerStats(carol, c.video.id, 'carol video from alice (live)');
  });

  it('changing the display name reaches the other pages', async () => {
    const { alice, bob, carol } = pages;
    const aliceId = await alice.peerId();
    await alice.evaluate(() => window.shardcast.changeDisplayName('alice the second'));
    for (const rx of [bob, carol]) {
      await waitNotification(rx, 'peerDisplayNameChanged', { peerId: aliceId, displayName: 'alice the second' });
      await waitFor(`${rx.name} to show the new name`, async () =>
        (await rx.page.locator(`.tile[data-peer-id="${aliceId}"] .name`).textContent()) === 'alice the second',
      );
    }
  });

  it('webcam off closes the consumers (track ended); webcam on brings video back', async () => {
    const { alice, bob, carol } = pages;
    const aliceId = await alice.peerId();
    const before = {};
    for (const rx of [bob, carol]) before[rx.name] = (await rx.consumersOf(aliceId)).video.id;
    await alice.evaluate(() => window.shardcast.disableWebcam());
    for (const rx of [bob, carol]) {
      await waitNotification(rx, 'consumerClosed', { consumerId: before[rx.name] });
      const s = (await rx.stats()).consumers[before[rx.name]];
      assert.equal(s.trackState, 'ended');
    }
    await alice.evaluate(() => window.shardcast.enableWebcam());
    for (const rx of [bob, carol]) {
      const video = await expectRising(rx, alice, 'video', 'framesDecoded', 20);
      assert.notEqual(video.consumerId, before[rx.name]);
      record(`${rx.name} video from alice after webcam on`, video);
    }
  });

  it('the stats panel gets the get*Stats answers every 2.5 s', async () => {
    const { bob } = pages;
    await bob.evaluate(() => window.shardcast.toggleStats(true));
    const first = await waitFor('bob stats snapshot', () => bob.evaluate(() => window.shardcast.stats));
    const second = await waitFor('a newer stats snapshot', () =>
      bob.evaluate((at) => (window.shardcast.stats && window.shardcast.stats.at > at ? window.shardcast.stats : null), first.at),
    );
    await bob.evaluate(() => window.shardcast.toggleStats(false));
    assert.equal(second.transports.send[0].type, 'webrtc-transport');
    assert.equal(second.transports.recv[0].type, 'webrtc-transport');
    const producerStats = Object.values(second.producers);
    assert.equal(producerStats.length, 2);
    for (const s of producerStats) assert.ok(s.length >= 1 && s[0].type === 'inbound-rtp', JSON.stringify(s));
    const consumerStats = Object.values(second.consumers);
    assert.equal(consumerStats.length, 4, 'two consumers of alice and two of carol');
    for (const s of consumerStats) assert.equal(s[0].type, 'outbound-rtp');
    const panel = await bob.page.locator('#stats').textContent();
    assert.match(panel, /consumer video/);
    record('stats panel', { interval_ms: second.at - first.at });
  });

  it('a page that leaves: the others get peerClosed and its tracks end', async () => {
    const { alice, bob, carol } = pages;
    const carolId = await carol.peerId();
    const carolConsumers = {};
    for (const rx of [alice, bob]) {
      const c = await rx.consumersOf(carolId);
      carolConsumers[rx.name] = [c.audio.id, c.video.id];
    }
    await carol.close();
    delete pages.carol;
    for (const rx of [alice, bob]) {
      await waitNotification(rx, 'peerClosed', { peerId: carolId });
      const ended = await waitFor(
        `${rx.name}: carol's tracks to end`,
        async () => {
          const { consumers } = await rx.stats();
          const states = carolConsumers[rx.name].map((id) => consumers[id].trackState);
          return states.every((s) => s === 'ended') ? states : null;
        },
        { timeout: 30_000, describe: async () => JSON.stringify((await rx.stats()).consumers) },
      );
      const tileGone = await rx.page.locator(`.tile[data-peer-id="${carolId}"]`).count();
      assert.equal(tileGone, 0, 'carol\'s tile is removed');
      record(`${rx.name} after carol left`, { tracks: ended });
    }
  });

  it('srtp=cm negotiates AES_CM_128_HMAC_SHA1_80, and media crosses between CM and GCM peers', async () => {
    for (const name of Object.keys(pages)) {
      await pages[name].close();
      delete pages[name];
    }
    pages.dave = await openPage(browser, server, { name: 'dave', roomId: 'room-srtp', query: { ...BASE_QUERY, srtp: 'cm' } });
    pages.erin = await openPage(browser, server, { name: 'erin', roomId: 'room-srtp', query: { ...BASE_QUERY, srtp: 'gcm' } });
    const { dave, erin } = pages;
    for (const [rx, tx] of [[dave, erin], [erin, dave]]) {
      const video = await expectRising(rx, tx, 'video', 'framesDecoded', 20);
      record(`${rx.name} video from ${tx.name}`, video);
      const audio = await expectRising(rx, tx, 'audio', 'packetsReceived', 50);
      record(`${rx.name} audio from ${tx.name}`, audio);
    }
    const daveT = await ciphers(dave);
    const erinT = await ciphers(erin);
    record('dave (srtp=cm) srtp', { transports: daveT.map((x) => `${x.srtpCipher} dtls-${x.dtlsRole}`) });
    record('erin (srtp=gcm) srtp', { transports: erinT.map((x) => `${x.srtpCipher} dtls-${x.dtlsRole}`) });
    assert.equal(daveT.length, 2);
    for (const x of daveT) {
      assert.match(x.srtpCipher, AES_CM);
      assert.equal(x.dtlsRole, 'server');
    }
    for (const x of erinT) assert.match(x.srtpCipher, GCM);
  });

  it('forceTcp=true: media flows over ICE-TCP', async () => {
    for (const name of Object.keys(pages)) {
      await pages[name].close();
      delete pages[name];
    }
    const query = { ...BASE_QUERY, forceTcp: 'true' };
    pages.frank = await openPage(browser, server, { name: 'frank', roomId: 'room-tcp', query });
    pages.grace = await openPage(browser, server, { name: 'grace', roomId: 'room-tcp', query });
    const { frank, grace } = pages;
    for (const [rx, tx] of [[frank, grace], [grace, frank]]) {
      const video = await expectRising(rx, tx, 'video', 'framesDecoded', 20);
      record(`${rx.name} video from ${tx.name} over TCP`, video);
      const audio = await expectRising(rx, tx, 'audio', 'packetsReceived', 50);
      record(`${rx.name} audio from ${tx.name} over TCP`, audio);
    }
    for (const p of [frank, grace]) {
      const tuples = await p.evaluate(async () => {
        const s = window.shardcast;
        const out = [];
        for (const t of Object.values(s.transports)) {
          const [stats] = await s.request('getTransportStats', { transportId: t.id });
          out.push(stats.iceSelectedTuple);
        }
        return out;
      });
      record(`${p.name} server-side selected tuples`, { protocols: tuples.map((t) => t && t.protocol) });
      for (const t of tuples) assert.equal(t && t.protocol, 'tcp');
    }
  });
});
