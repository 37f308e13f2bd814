// Shardcast web client: the mediasoup-demo client's join flow (protoo signalling + mediasoup-client)
// in plain DOM code. See /work/shared/protocol/mediasoup-demo-protocol.md §1, §3, §4, §6.6.
//
// Page URL parameters:
//   roomId        room to join (invented and written back into the URL when absent, as the demo does)
//   peerId        our peer id (8 random lowercase characters when absent)
//   displayName   our display name
//   forceTcp=true ask the server for TCP candidates only
//   produce=false / consume=false   as in the demo
//   webcamRes=qvga|vga|hd           webcam capture size (default hd, the demo's)
//   numSimulcastStreams=1..3, enableWebcamLayers=false, webcamScalabilityMode   as in the demo
//   consumerReplicas              passed through to the protoo URL when present
//   srtp=gcm|cm   SRTP profile family to end up with (see forceSrtp below)
//
// Everything a test needs is on `window.shardcast` (see `state` below).

import { Device } from 'mediasoup-client';
import { Peer, WebSocketTransport } from 'protoo-client';

const params = new URLSearchParams(location.search);

function randomId() {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

let roomId = params.get('roomId');
if (!roomId) {
  roomId = randomId();
  params.set('roomId', roomId);
  history.replaceState(null, '', `${location.pathname}?${params}`);
}
const peerId = params.get('peerId') || randomId();
const forceTcp = params.get('forceTcp') === 'true';
const produce = params.get('produce') !== 'false';
const consume = params.get('consume') !== 'false';

// The demo's webcam constraints ("hd" is its default resolution).
const VIDEO_CONSTRAINTS = {
  qvga: { width: { ideal: 320 }, height: { ideal: 240 } },
  vga: { width: { ideal: 640 }, height: { ideal: 480 } },
  hd: { width: { ideal: 1280 }, height: { ideal: 720 } },
};
const webcamRes = VIDEO_CONSTRAINTS[params.get('webcamRes')] ? params.get('webcamRes') : 'hd';

// The demo's webcam encodings: numSimulcastStreams (default 3) rid streams, each L1T3:
// 1/4 resolution at 500 kbps, 1/2 at 1 Mbps, full at 5 Mbps; enableWebcamLayers=false sends one
// plain stream.
const enableWebcamLayers = params.get('enableWebcamLayers') !== 'false';
const numSimulcastStreams = Math.max(1, Math.min(3, Number(params.get('numSimulcastStreams')) || 3));
const webcamScalabilityMode = params.get('webcamScalabilityMode') || 'L1T3';

function webcamEncodings() {
  if (!enableWebcamLayers) return undefined;
  const encodings = [{ scaleResolutionDownBy: 1, maxBitrate: 5000000, scalabilityMode: webcamScalabilityMode }];
  if (numSimulcastStreams > 1) {
    encodings.unshift({ scaleResolutionDownBy: 2, maxBitrate: 1000000, scalabilityMode: webcamScalabilityMode });
  }
  if (numSimulcastStreams > 2) {
    encodings.unshift({ scaleResolutionDownBy: 4, maxBitrate: 500000, scalabilityMode: webcamScalabilityMode });
  }
  return encodings;
}

// SRTP family. Chrome offers AES_CM_128_HMAC_SHA1_80, AEAD_AES_256_GCM and AEAD_AES_128_GCM in its
// DTLS use_srtp extension and has no page-level setting to drop any of them (Blink hard-codes
// enable_gcm_crypto_suites = true); the DTLS *server* picks the profile. So:
//   gcm: the demo's flow (DTLS role "auto": the browser is DTLS client, the SFU is DTLS server and
//        picks by its own preference, AEAD_AES_256_GCM first);
//   cm:  the DTLS roles are swapped (the transport's remote role is set to "client", so
//        mediasoup-client sends role "server" in connectWebRtcTransport, and Chrome's SDP says
//        a=setup:passive on both transports): Chrome is DTLS server, the SFU is DTLS client, and
//        BoringSSL picks by Chrome's preference, AES_CM_128_HMAC_SHA1_80 first.
// Which profile was used is visible in getStats() (transport.srtpCipher) and checked by the tests.
const forceSrtp = ['gcm', 'cm'].includes(params.get('srtp')) ? params.get('srtp') : null;
const remoteDtlsRole = forceSrtp === 'cm' ? 'client' : 'auto';
if (forceSrtp === 'cm') {
  // mediasoup-client honours a forced role in the SDP it writes for the server side (the send
  // transport's remote answer gets a=setup:active), but on the receive transport it answers the
  // server's a=setup:actpass with Chrome's own answer, and Chrome picks a=setup:active (DTLS
  // client) there while connectWebRtcTransport says "server". Make Chrome's answers passive so both
  // transports agree with what the server is told.
  const proto = window.RTCPeerConnection.prototype;
  const setLocalDescription = proto.setLocalDescription;
  proto.setLocalDescription = function (description, ...rest) {
    if (description && description.type === 'answer' && typeof description.sdp === 'string') {
      description = { type: 'answer', sdp: description.sdp.replace(/^a=setup:active\r?$/gm, 'a=setup:passive\r') };
    }
    return setLocalDescription.call(this, description, ...rest);
  };
}

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// State exposed for people (devtools) and tests.

const state = {
  roomId,
  peerId,
  displayName: params.get('displayName') || `Peer ${peerId.slice(0, 4)}`,
  forceSrtp,
  remoteDtlsRole,
  // 'connecting' | 'joining' | 'joined' | 'disconnected' | 'closed' | 'failed'
  status: 'connecting',
  error: null,
  protoo: null,
  device: null,
  transports: { send: null, recv: null },
  // Our producers by id, plus the current mic / webcam producers.
  producers: {},
  mic: null,
  webcam: null,
  // mediasoup-client Consumers by id, and what the server told about each.
  consumers: {},
  consumerInfo: {},
  // Consumers closed since the page loaded (their tracks stay inspectable).
  closedConsumers: {},
  // Remote peers by id: { id, displayName, device, consumers: [consumerId] }.
  peers: {},
  // Peers that left: id -> { displayName, closedAt }.
  closedPeers: {},
  producerScores: {},
  activeSpeaker: null,
  // Every notification received, in order (capped).
  notifications: [],
  // Last stats panel snapshot (server get*Stats answers).
  stats: null,
  statsOpen: false,
  request: (method, data) => state.protoo.request(method, data),
  muteMic,
  unmuteMic,
  enableWebcam,
  disableWebcam,
  pauseProducer,
  resumeProducer,
  changeDisplayName,
  toggleStats,
  collectStats,
  srtpCiphers,
  leave,
};
window.shardcast = state;

function setStatus(text, isError = false) {
  const el = $('status');
  el.textContent = text;
  el.classList.toggle('error', isError);
}

function fail(where, error) {
  console.error(`${where}:`, error);
  state.error = `${where}: ${error && error.message ? error.message : error}`;
  setStatus(state.error, true);
}

function deviceInfo() {
  const ua = navigator.userAgent;
  let m;
  if ((m = ua.match(/Edg\/([\d.]+)/))) return { flag: 'edge', name: 'Edge', version: m[1] };
  if ((m = ua.match(/OPR\/([\d.]+)/))) return { flag: 'opera', name: 'Opera', version: m[1] };
  if ((m = ua.match(/(?:Headless)?Chrom(?:e|ium)\/([\d.]+)/))) {
    return { flag: 'chrome', name: 'Chrome', version: m[1] };
  }
  if ((m = ua.match(/Firefox\/([\d.]+)/))) return { flag: 'firefox', name: 'Firefox', version: m[1] };
  if ((m = ua.match(/Version\/([\d.]+).*Safari/))) {
    return { flag: 'safari', name: 'Safari', version: m[1] };
  }
  return { flag: 'unknown', name: 'unknown', version: 'unknown' };
}

// ---------------------------------------------------------------------------------------------
// Signalling.

function protooUrl() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const query = new URLSearchParams({ roomId, peerId });
  if (params.has('consumerReplicas')) query.set('consumerReplicas', params.get('consumerReplicas'));
  return `${scheme}://${location.host}/?${query}`;
}

function connect() {
  const protoo = new Peer(new WebSocketTransport(protooUrl()));
  state.protoo = protoo;

  protoo.on('open', () => {
    join().catch((error) => {
      state.status = 'failed';
      fail('join failed', error);
    });
  });
  protoo.on('failed', () => {
    state.status = 'failed';
    fail('signalling', 'WebSocket connection failed');
  });
  protoo.on('disconnected', () => {
    // As the demo: drop the media session; protoo reconnects and `open` joins again.
    state.status = 'disconnected';
    setStatus('WebSocket disconnected, reconnecting…', true);
    resetSession();
  });
  protoo.on('close', () => {
    if (state.status !== 'failed') state.status = 'closed';
    setStatus('closed');
    resetSession();
  });
  protoo.on('request', onRequest);
  protoo.on('notification', onNotification);
}

function resetSession() {
  for (const transport of Object.values(state.transports)) {
    if (transport && !transport.closed) transport.close();
  }
  state.transports = { send: null, recv: null };
  state.mic = null;
  state.webcam = null;
  state.producers = {};
  for (const id of Object.keys(state.consumers)) removeConsumer(id);
  for (const id of Object.keys(state.peers)) removePeer(id);
  renderButtons();
}

async function join() {
  state.status = 'joining';
  setStatus('joining…');
  const protoo = state.protoo;
  const device = new Device();
  state.device = device;

  const routerRtpCapabilities = await protoo.request('getRouterRtpCapabilities');
  await device.load({ routerRtpCapabilities });

  if (produce) {
    const info = await protoo.request('createWebRtcTransport', {
      forceTcp,
      producing: true,
      consuming: false,
    });
    const transport = device.createSendTransport({
      id: info.id,
      iceParameters: info.iceParameters,
      iceCandidates: info.iceCandidates,
      // The demo forces "auto"; srtp=cm swaps the roles (see above).
      dtlsParameters: { ...info.dtlsParameters, role: remoteDtlsRole },
      sctpParameters: info.sctpParameters,
      iceServers: [],
    });
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      protoo
        .request('connectWebRtcTransport', { transportId: transport.id, dtlsParameters })
        .then(callback)
        .catch(errback);
    });
    transport.on('produce', async ({ kind, rtpParameters, appData }, callback, errback) => {
      try {
        const { id } = await protoo.request('produce', {
          transportId: transport.id,
          kind,
          rtpParameters,
          appData,
        });
        callback({ id });
      } catch (error) {
        errback(error);
      }
    });
    transport.on('connectionstatechange', (s) => console.debug('send transport', s));
    state.transports.send = transport;
  }

  if (consume) {
    const info = await protoo.request('createWebRtcTransport', {
      forceTcp,
      producing: false,
      consuming: true,
    });
    const transport = device.createRecvTransport({
      id: info.id,
      iceParameters: info.iceParameters,
      iceCandidates: info.iceCandidates,
      dtlsParameters: { ...info.dtlsParameters, role: remoteDtlsRole },
      sctpParameters: info.sctpParameters,
      iceServers: [],
    });
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      protoo
        .request('connectWebRtcTransport', { transportId: transport.id, dtlsParameters })
        .then(callback)
        .catch(errback);
    });
    transport.on('connectionstatechange', (s) => console.debug('recv transport', s));
    state.transports.recv = transport;
  }

  const { peers } = await protoo.request('join', {
    displayName: state.displayName,
    device: deviceInfo(),
    rtpCapabilities: consume ? device.rtpCapabilities : undefined,
  });
  for (const peer of peers) addPeer(peer);

  state.status = 'joined';
  setStatus(`joined room ${roomId}`);
  renderButtons();

  if (produce) {
    if (device.canProduce('audio')) await enableMic().catch((e) => fail('microphone', e));
    if (device.canProduce('video')) await enableWebcam().catch((e) => fail('webcam', e));
  }
}

async function onRequest(request, accept, reject) {
  switch (request.method) {
    case 'newConsumer': {
      if (!consume) {
        reject(403, 'I do not want to consume');
        return;
      }
      const { peerId: producerPeerId, producerId, id, kind, rtpParameters, type, appData, producerPaused } =
        request.data;
      try {
        const consumer = await state.transports.recv.consume({
          id,
          producerId,
          kind,
          rtpParameters,
          streamId: `${producerPeerId}-${appData && appData.share ? 'share' : 'mic-webcam'}`,
          appData: { ...appData, peerId: producerPeerId },
        });
        state.consumers[consumer.id] = consumer;
        state.consumerInfo[consumer.id] = {
          id: consumer.id,
          peerId: producerPeerId,
          producerId,
          kind,
          type,
          ssrc: rtpParameters.encodings[0].ssrc,
          producerPaused: Boolean(producerPaused),
          closed: false,
          score: null,
          spatialLayer: null,
          temporalLayer: null,
        };
        consumer.on('transportclose', () => removeConsumer(consumer.id));
        attachConsumer(consumer);
        accept();
      } catch (error) {
        // The demo rethrows here (and so never answers); answering an error is kinder to the server.
        fail('newConsumer', error);
        reject(500, String(error));
      }
      break;
    }
    case 'newDataConsumer':
      // This client opens no DataChannels (it never sends sctpCapabilities).
      reject(403, 'I do not want DataChannels');
      break;
    default:
      reject(404, `unknown request.method "${request.method}"`);
  }
}

function onNotification(notification) {
  const { method, data } = notification;
  state.notifications.push({ method, data, at: Date.now() });
  if (state.notifications.length > 5000) state.notifications.splice(0, 1000);

  switch (method) {
    case 'mediasoup-version':
      break;
    case 'newPeer':
      addPeer(data);
      break;
    case 'peerClosed':
      removePeer(data.peerId);
      break;
    case 'peerDisplayNameChanged': {
      const peer = state.peers[data.peerId];
      if (peer) {
        peer.displayName = data.displayName;
        renderPeer(peer);
      }
      break;
    }
    case 'consumerClosed':
      removeConsumer(data.consumerId);
      break;
    case 'consumerPaused':
    case 'consumerResumed': {
      const info = state.consumerInfo[data.consumerId];
      if (info) {
        info.producerPaused = method === 'consumerPaused';
        renderPeer(state.peers[info.peerId]);
      }
      break;
    }
    case 'consumerScore': {
      const info = state.consumerInfo[data.consumerId];
      if (info) info.score = data.score;
      break;
    }
    case 'consumerLayersChanged': {
      const info = state.consumerInfo[data.consumerId];
      if (info) {
        info.spatialLayer = data.spatialLayer;
        info.temporalLayer = data.temporalLayer;
      }
      break;
    }
    case 'producerScore':
      state.producerScores[data.producerId] = data.score;
      break;
    case 'activeSpeaker':
      state.activeSpeaker = data.peerId;
      break;
    case 'downlinkBwe':
    case 'dataConsumerClosed':
      break;
    default:
      console.warn('unknown protoo notification', method, data);
  }
}

// ---------------------------------------------------------------------------------------------
// Peers and consumers.

function addPeer({ id, displayName, device }) {
  if (state.peers[id]) return;
  state.peers[id] = { id, displayName, device, consumers: [] };
  delete state.closedPeers[id];
  // Consumers may have arrived before newPeer (they do not, by the protocol, but be tolerant).
  for (const info of Object.values(state.consumerInfo)) {
    if (info.peerId === id && !info.closed) state.peers[id].consumers.push(info.id);
  }
  renderPeer(state.peers[id]);
}

function removePeer(id) {
  const peer = state.peers[id];
  if (!peer) return;
  state.closedPeers[id] = { displayName: peer.displayName, closedAt: Date.now() };
  delete state.peers[id];
  const tile = document.querySelector(`.tile[data-peer-id="${CSS.escape(id)}"]`);
  if (tile) tile.remove();
}

function attachConsumer(consumer) {
  const info = state.consumerInfo[consumer.id];
  const peer = state.peers[info.peerId];
  if (peer && !peer.consumers.includes(consumer.id)) peer.consumers.push(consumer.id);
  if (peer) renderPeer(peer);
}

function removeConsumer(consumerId) {
  const consumer = state.consumers[consumerId];
  const info = state.consumerInfo[consumerId];
  if (consumer && !consumer.closed) consumer.close();
  if (consumer) state.closedConsumers[consumerId] = consumer;
  delete state.consumers[consumerId];
  if (info) {
    info.closed = true;
    const peer = state.peers[info.peerId];
    if (peer) {
      peer.consumers = peer.consumers.filter((c) => c !== consumerId);
      renderPeer(peer);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Producers and buttons.

async function enableMic() {
  if (state.mic || !state.transports.send) return;
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const track = stream.getAudioTracks()[0];
  const producer = await state.transports.send.produce({
    track,
    codecOptions: { opusStereo: true, opusDtx: true, opusFec: true, opusNack: true },
  });
  state.mic = producer;
  state.producers[producer.id] = producer;
  producer.on('transportclose', () => forgetProducer(producer));
  producer.on('trackended', () => forgetProducer(producer));
  renderButtons();
}

async function enableWebcam() {
  if (state.webcam || !state.transports.send) return;
  const stream = await navigator.mediaDevices.getUserMedia({ video: VIDEO_CONSTRAINTS[webcamRes] });
  const track = stream.getVideoTracks()[0];
  const producer = await state.transports.send.produce({
    track,
    encodings: webcamEncodings(),
    codecOptions: { videoGoogleStartBitrate: 1000 },
  });
  state.webcam = producer;
  state.producers[producer.id] = producer;
  producer.on('transportclose', () => forgetProducer(producer));
  producer.on('trackended', () => disableWebcam().catch(() => {}));
  renderMe();
  renderButtons();
}

async function disableWebcam() {
  const producer = state.webcam;
  if (!producer) return;
  forgetProducer(producer);
  producer.close();
  await state.protoo.request('closeProducer', { producerId: producer.id });
}

function forgetProducer(producer) {
  delete state.producers[producer.id];
  if (state.mic === producer) state.mic = null;
  if (state.webcam === producer) state.webcam = null;
  renderMe();
  renderButtons();
}

async function pauseProducer(which) {
  const producer = state[which];
  if (!producer || producer.paused) return;
  producer.pause();
  await state.protoo.request('pauseProducer', { producerId: producer.id });
  renderButtons();
}

async function resumeProducer(which) {
  const producer = state[which];
  if (!producer || !producer.paused) return;
  producer.resume();
  await state.protoo.request('resumeProducer', { producerId: producer.id });
  renderButtons();
}

function muteMic() {
  return pauseProducer('mic');
}

function unmuteMic() {
  return resumeProducer('mic');
}

async function changeDisplayName(displayName) {
  if (!displayName || displayName === state.displayName) return;
  await state.protoo.request('changeDisplayName', { displayName });
  state.displayName = displayName;
  $('display-name').textContent = displayName;
  renderMe();
}

// ---------------------------------------------------------------------------------------------
// Stats panel: the demo's get*Stats requests every 2.5 s while open.

async function collectStats() {
  const req = (method, data) => state.protoo.request(method, data);
  const snapshot = { at: Date.now(), transports: {}, producers: {}, consumers: {} };
  for (const [name, transport] of Object.entries(state.transports)) {
    if (transport) snapshot.transports[name] = await req('getTransportStats', { transportId: transport.id });
  }
  for (const producer of Object.values(state.producers)) {
    snapshot.producers[producer.id] = await req('getProducerStats', { producerId: producer.id });
  }
  for (const consumer of Object.values(state.consumers)) {
    snapshot.consumers[consumer.id] = await req('getConsumerStats', { consumerId: consumer.id });
  }
  state.stats = snapshot;
  return snapshot;
}

let statsTimer = null;

function toggleStats(open = !state.statsOpen) {
  state.statsOpen = open;
  $('stats').classList.toggle('open', open);
  clearInterval(statsTimer);
  statsTimer = null;
  if (open) {
    const tick = () =>
      collectStats()
        .then(renderStats)
        .catch((e) => ($('stats').textContent = `stats failed: ${e.message || e}`));
    tick();
    statsTimer = setInterval(tick, 2500);
  }
}

function renderStats(s) {
  const lines = [`server stats at ${new Date(s.at).toLocaleTimeString()}`];
  const fmt = (n) => (typeof n === 'number' ? Math.round(n).toLocaleString('en') : String(n));
  for (const [name, [t] = []] of Object.entries(s.transports)) {
    if (!t) continue;
    lines.push(
      `${name} transport: ice ${t.iceState} dtls ${t.dtlsState} ` +
        `recv ${fmt(t.bytesReceived)} B (${fmt(t.recvBitrate)} bps) sent ${fmt(t.bytesSent)} B (${fmt(t.sendBitrate)} bps)`,
    );
  }
  for (const [id, streams] of Object.entries(s.producers)) {
    const p = state.producers[id];
    for (const st of streams) {
      lines.push(
        `producer ${p ? p.kind : ''} ${st.rid || st.ssrc}: ${fmt(st.packetCount)} pkts ` +
          `${fmt(st.bitrate)} bps score ${st.score} lost ${st.packetsLost} nack ${st.nackCount} pli ${st.pliCount}`,
      );
    }
  }
  for (const [id, streams] of Object.entries(s.consumers)) {
    const info = state.consumerInfo[id] || {};
    const peer = state.peers[info.peerId];
    const out = streams.find((x) => x.type === 'outbound-rtp');
    if (out) {
      lines.push(
        `consumer ${info.kind} of ${peer ? peer.displayName : info.peerId}: ${fmt(out.packetCount)} pkts ` +
          `${fmt(out.bitrate)} bps score ${out.score} nack ${out.nackCount} pli ${out.pliCount}` +
          (info.spatialLayer != null ? ` layers ${info.spatialLayer}.${info.temporalLayer}` : ''),
      );
    }
  }
  $('stats').textContent = lines.join('\n');
}

// The SRTP/DTLS parameters Chrome reports for our transports (getStats "transport" entries).
async function srtpCiphers() {
  const out = {};
  for (const [name, transport] of Object.entries(state.transports)) {
    if (!transport) continue;
    const report = await transport.getStats();
    for (const s of report.values()) {
      if (s.type === 'transport') {
        out[name] = {
          srtpCipher: s.srtpCipher,
          dtlsCipher: s.dtlsCipher,
          tlsVersion: s.tlsVersion,
          dtlsRole: s.dtlsRole,
          dtlsState: s.dtlsState,
        };
      }
    }
  }
  return out;
}

function leave() {
  if (state.protoo) state.protoo.close();
}

// ---------------------------------------------------------------------------------------------
// Rendering.

function renderButtons() {
  const joined = state.status === 'joined';
  const mic = $('btn-mic');
  mic.disabled = !joined || !state.mic;
  mic.textContent = state.mic && state.mic.paused ? 'Unmute mic' : 'Mute mic';
  const cam = $('btn-webcam');
  cam.disabled = !joined || !state.transports.send;
  cam.textContent = state.webcam ? 'Webcam off' : 'Webcam on';
  $('btn-name').disabled = !joined;
  $('btn-stats').disabled = !joined;
}

function tileFor(id, isMe) {
  let tile = document.querySelector(`.tile[data-peer-id="${CSS.escape(id)}"]`);
  if (!tile) {
    tile = document.createElement('div');
    tile.className = isMe ? 'tile me' : 'tile';
    tile.dataset.peerId = id;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true;
    tile.append(video);
    if (!isMe) {
      const audio = document.createElement('audio');
      audio.autoplay = true;
      tile.append(audio);
    }
    const label = document.createElement('div');
    label.className = 'label';
    label.innerHTML = '<span class="name"></span><span class="badges"></span>';
    tile.append(label);
    if (isMe) $('tiles').prepend(tile);
    else $('tiles').append(tile);
  }
  return tile;
}

function setTrack(el, track) {
  const current = el.srcObject ? el.srcObject.getTracks()[0] : null;
  if (current === track) return;
  el.srcObject = track ? new MediaStream([track]) : null;
  if (track) el.play().catch(() => {});
}

function renderMe() {
  const tile = tileFor(peerId, true);
  tile.querySelector('.name').textContent = `${state.displayName} (me)`;
  setTrack(tile.querySelector('video'), state.webcam ? state.webcam.track : null);
}

function renderPeer(peer) {
  if (!peer) return;
  const tile = tileFor(peer.id, false);
  tile.querySelector('.name').textContent = peer.displayName;
  let video = null;
  let audio = null;
  const badges = [];
  for (const id of peer.consumers) {
    const consumer = state.consumers[id];
    const info = state.consumerInfo[id];
    if (!consumer) continue;
    if (consumer.kind === 'video') video = consumer.track;
    else audio = consumer.track;
    if (info.producerPaused) badges.push(`${consumer.kind} paused`);
  }
  setTrack(tile.querySelector('video'), video);
  setTrack(tile.querySelector('audio'), audio);
  tile.querySelector('.badges').textContent = badges.join(' · ');
}

$('room-id').textContent = roomId;
$('peer-id').textContent = peerId;
$('display-name').textContent = state.displayName;
$('btn-mic').onclick = () =>
  (state.mic && state.mic.paused ? unmuteMic() : muteMic()).catch((e) => fail('mic', e));
$('btn-webcam').onclick = () =>
  (state.webcam ? disableWebcam() : enableWebcam()).catch((e) => fail('webcam', e));
$('btn-name').onclick = () => {
  const name = prompt('Display name', state.displayName);
  if (name) changeDisplayName(name.trim()).catch((e) => fail('changeDisplayName', e));
};
$('btn-stats').onclick = () => toggleStats();
renderMe();
renderButtons();
connect();
