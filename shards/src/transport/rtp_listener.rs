//! Finds the producer stream an incoming RTP packet belongs to (mediasoup's RtpListener plus the
//! producer's stream detection): by SSRC when known, else by the MID header extension and then
//! RID / repaired-RID (Chrome's simulcast announces no SSRCs), learning the SSRC on the way.

use std::collections::HashMap;
use std::rc::Rc;

use crate::rtp_parameters::RtpParameters;

pub const URI_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
pub const URI_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
pub const URI_RRID: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
pub const URI_TRANSPORT_WIDE_CC: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
pub const URI_ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";

/// The header extension ids a transport reads on incoming RTP (the browser's ids, which all
/// producers of one BUNDLE transport share).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderExtensionIds {
    pub mid: Option<u8>,
    pub rid: Option<u8>,
    pub rrid: Option<u8>,
    pub transport_wide_cc: Option<u8>,
    pub abs_send_time: Option<u8>,
}

impl HeaderExtensionIds {
    /// Takes the ids a producer declares, keeping ones already known (the first producer wins,
    /// as in mediasoup).
    pub fn learn(&mut self, params: &RtpParameters) {
        for ext in &params.header_extensions {
            let slot = match ext.uri.as_str() {
                URI_MID => &mut self.mid,
                URI_RID => &mut self.rid,
                URI_RRID => &mut self.rrid,
                URI_TRANSPORT_WIDE_CC => &mut self.transport_wide_cc,
                URI_ABS_SEND_TIME => &mut self.abs_send_time,
                _ => continue,
            };
            if slot.is_none() && (1..=255).contains(&ext.id) {
                *slot = Some(ext.id);
            }
        }
    }
}

/// A producer's stream: which producer, which encoding, media or its RTX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRef {
    pub producer_id: Rc<str>,
    pub encoding: usize,
    pub rtx: bool,
}

#[derive(Debug)]
struct ListenedProducer {
    id: Rc<str>,
    rids: Vec<Option<String>>,
    rtx_payload_types: Vec<u8>,
    /// SSRCs learned or declared, per encoding: (media, rtx).
    ssrcs: Vec<(Option<u32>, Option<u32>)>,
}

/// The per-transport demultiplexing table.
#[derive(Debug, Default)]
pub struct RtpListener {
    ssrcs: HashMap<u32, StreamRef>,
    mids: HashMap<String, Rc<str>>,
    producers: HashMap<Rc<str>, ListenedProducer>,
}

impl RtpListener {
    /// Registers a producer's SSRCs and MID; refuses ones another producer of the transport
    /// already uses (mediasoup: "ssrc already exists" / "MID already exists").
    pub fn add_producer(
        &mut self,
        producer_id: &str,
        params: &RtpParameters,
    ) -> Result<(), String> {
        for encoding in &params.encodings {
            for ssrc in [encoding.ssrc, encoding.rtx.as_ref().map(|r| r.ssrc)]
                .into_iter()
                .flatten()
            {
                if self.ssrcs.contains_key(&ssrc) {
                    return Err(format!("ssrc already exists in RTP listener [ssrc:{ssrc}]"));
                }
            }
        }
        if let Some(mid) = &params.mid {
            if self.mids.contains_key(mid) {
                return Err(format!("MID already exists in RTP listener [mid:{mid}]"));
            }
        }
        let id: Rc<str> = Rc::from(producer_id);
        let encodings = params.encodings.len().max(1);
        let mut producer = ListenedProducer {
            id: id.clone(),
            rids: (0..encodings)
                .map(|i| params.encodings.get(i).and_then(|e| e.rid.clone()))
                .collect(),
            rtx_payload_types: params
                .codecs
                .iter()
                .filter(|c| c.mime_type.to_ascii_lowercase().ends_with("/rtx"))
                .map(|c| c.payload_type)
                .collect(),
            ssrcs: vec![(None, None); encodings],
        };
        for (i, encoding) in params.encodings.iter().enumerate() {
            if let Some(ssrc) = encoding.ssrc {
                producer.ssrcs[i].0 = Some(ssrc);
                self.ssrcs.insert(
                    ssrc,
                    StreamRef {
                        producer_id: id.clone(),
                        encoding: i,
                        rtx: false,
                    },
                );
            }
            if let Some(rtx) = &encoding.rtx {
                producer.ssrcs[i].1 = Some(rtx.ssrc);
                self.ssrcs.insert(
                    rtx.ssrc,
                    StreamRef {
                        producer_id: id.clone(),
                        encoding: i,
                        rtx: true,
                    },
                );
            }
        }
        if let Some(mid) = &params.mid {
            self.mids.insert(mid.clone(), id.clone());
        }
        self.producers.insert(id, producer);
        Ok(())
    }

    pub fn remove_producer(&mut self, producer_id: &str) {
        self.ssrcs.retain(|_, s| &*s.producer_id != producer_id);
        self.mids.retain(|_, p| &**p != producer_id);
        self.producers.remove(producer_id);
    }

    /// The stream of a packet. `mid`, `rid` and `rrid` are the packet's extension values (read
    /// with the transport's [`HeaderExtensionIds`]); `payload_type` tells RTX apart when a
    /// single-encoding producer announced no SSRCs.
    pub fn find(
        &mut self,
        ssrc: u32,
        payload_type: u8,
        mid: Option<&[u8]>,
        rid: Option<&[u8]>,
        rrid: Option<&[u8]>,
    ) -> Option<StreamRef> {
        if let Some(stream) = self.ssrcs.get(&ssrc) {
            return Some(stream.clone());
        }
        let mid = std::str::from_utf8(mid?).ok()?;
        let producer_id = self.mids.get(mid)?.clone();
        let producer = self.producers.get_mut(&producer_id)?;
        let by_rid = |r: Option<&[u8]>| {
            let r = std::str::from_utf8(r?).ok()?;
            producer.rids.iter().position(|x| x.as_deref() == Some(r))
        };
        let (encoding, rtx) = if let Some(i) = by_rid(rid) {
            (i, false)
        } else if let Some(i) = by_rid(rrid) {
            (i, true)
        } else if producer.rids.len() == 1 && producer.rids[0].is_none() {
            (0, producer.rtx_payload_types.contains(&payload_type))
        } else {
            return None;
        };
        // One SSRC per (encoding, media|rtx): a new one replaces the old, so the table stays
        // bounded whatever a sender does.
        let slot = if rtx {
            &mut producer.ssrcs[encoding].1
        } else {
            &mut producer.ssrcs[encoding].0
        };
        if let Some(old) = slot.replace(ssrc) {
            self.ssrcs.remove(&old);
        }
        let stream = StreamRef {
            producer_id: producer.id.clone(),
            encoding,
            rtx,
        };
        self.ssrcs.insert(ssrc, stream.clone());
        Some(stream)
    }

    /// The SSRC currently known for a producer's encoding (media), e.g. to address a PLI.
    pub fn media_ssrc(&self, producer_id: &str, encoding: usize) -> Option<u32> {
        self.producers.get(producer_id)?.ssrcs.get(encoding)?.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: serde_json::Value) -> RtpParameters {
        crate::rtp_parameters::parse_rtp_parameters(&v).unwrap()
    }

    fn simulcast() -> RtpParameters {
        params(json!({
            "mid": "1",
            "codecs": [
                {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000},
                {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}}
            ],
            "headerExtensions": [
                {"uri": URI_MID, "id": 4}, {"uri": URI_RID, "id": 10}, {"uri": URI_RRID, "id": 11},
                {"uri": URI_TRANSPORT_WIDE_CC, "id": 3}
            ],
            "encodings": [{"rid": "r0"}, {"rid": "r1"}, {"rid": "r2"}],
            "rtcp": {"cname": "x"}
        }))
    }

    #[test]
    fn learns_rid_streams_and_their_rtx_by_mid() {
        let mut listener = RtpListener::default();
        listener.add_producer("p", &simulcast()).unwrap();
        let mut ids = HeaderExtensionIds::default();
        ids.learn(&simulcast());
        assert_eq!(ids.mid, Some(4));
        assert_eq!(ids.transport_wide_cc, Some(3));
        assert_eq!(listener.find(111, 96, None, None, None), None);
        assert_eq!(listener.find(111, 96, Some(b"9"), Some(b"r0"), None), None);
        let s = listener
            .find(111, 96, Some(b"1"), Some(b"r1"), None)
            .unwrap();
        assert_eq!((s.encoding, s.rtx), (1, false));
        // Known by SSRC from now on, without extensions.
        assert_eq!(listener.find(111, 96, None, None, None), Some(s));
        let r = listener
            .find(222, 97, Some(b"1"), None, Some(b"r1"))
            .unwrap();
        assert_eq!((r.encoding, r.rtx), (1, true));
        assert_eq!(listener.media_ssrc("p", 1), Some(111));
        // A new SSRC for the same stream replaces the old one.
        listener
            .find(333, 96, Some(b"1"), Some(b"r1"), None)
            .unwrap();
        assert_eq!(listener.find(111, 96, None, None, None), None);
        listener.remove_producer("p");
        assert_eq!(listener.find(333, 96, None, None, None), None);
    }

    #[test]
    fn ssrc_producers_and_duplicates() {
        let mut listener = RtpListener::default();
        let p = params(json!({
            "mid": "0",
            "codecs": [
                {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000},
                {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}}
            ],
            "encodings": [{"ssrc": 1000, "rtx": {"ssrc": 2000}}]
        }));
        listener.add_producer("a", &p).unwrap();
        assert!(listener.find(2000, 97, None, None, None).unwrap().rtx);
        assert!(listener.add_producer("b", &p).is_err(), "same SSRC and MID");
        // Single encoding without SSRCs: any SSRC on the MID, RTX told apart by payload type.
        let q = params(json!({
            "mid": "5",
            "codecs": [
                {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000},
                {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}}
            ],
            "encodings": [{}]
        }));
        listener.add_producer("c", &q).unwrap();
        assert!(!listener.find(5, 96, Some(b"5"), None, None).unwrap().rtx);
        assert!(listener.find(6, 97, Some(b"5"), None, None).unwrap().rtx);
    }
}
