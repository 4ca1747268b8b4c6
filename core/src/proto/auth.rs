//! Authenticated UDP datagrams (`udp key FILE`): a one-line header with a
//! version, the kind of message, a key id, a timestamp, a nonce and an
//! HMAC-SHA256 tag over all of them and the payload. Documented in
//! docs/PROTOCOL.md so that other programs can speak it. Pure: the caller
//! brings the clock and the nonce.
//!
//! ```text
//! PMTR1 KIND KEYID TIMESTAMP NONCE TAG\n
//! PAYLOAD
//! ```

use std::collections::{HashSet, VecDeque};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// First word of a signed datagram; the version of this framing.
pub const MAGIC: &str = "PMTR1";
/// How far a control datagram's timestamp may be from pmtr's clock.
pub const MAX_SKEW_SECS: u64 = 30;
/// Shortest key accepted.
pub const MIN_KEY_BYTES: usize = 16;
/// Longest header line read before the payload.
const MAX_HEADER: usize = 200;
/// Remembered (timestamp, nonce) pairs: more than a flood of valid signed
/// datagrams could fill within the skew window at any sane rate.
pub const REPLAY_CAPACITY: usize = 65_536;

type HmacSha256 = Hmac<Sha256>;

/// What a datagram carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Report,
    Control,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Report => "report",
            Kind::Control => "control",
        }
    }
}

/// A shared secret and the id that names it on the wire.
#[derive(Clone)]
pub struct Key {
    secret: Vec<u8>,
    /// The first 4 bytes of SHA-256 of the secret, in hex: says which key
    /// signed without saying anything useful about it.
    id: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is shorter than {MIN_KEY_BYTES} bytes")]
    TooShort,
}

impl Key {
    /// A key from the content of a key file; trailing white space (a final
    /// newline) is not part of it.
    pub fn new(file_content: &[u8]) -> Result<Key, KeyError> {
        let end = file_content
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        let secret = file_content[..end].to_vec();
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort);
        }
        let digest = Sha256::digest(&secret);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Key { secret, id })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, header: &str, payload: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length: the fallback is never used.
        let mut mac = HmacSha256::new_from_slice(&self.secret)
            .unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        mac.update(header.as_bytes());
        mac.update(b"\n");
        mac.update(payload);
        mac
    }
}

/// Signs `payload`: the datagram to send.
pub fn sign(key: &Key, kind: Kind, unix_secs: u64, nonce: u64, payload: &[u8]) -> Vec<u8> {
    let header = format!(
        "{MAGIC} {} {} {unix_secs} {nonce:016x}",
        kind.word(),
        key.id
    );
    let tag = key.mac(&header, payload).finalize().into_bytes();
    let mut datagram = Vec::with_capacity(header.len() + 66 + payload.len());
    datagram.extend_from_slice(header.as_bytes());
    datagram.push(b' ');
    for byte in tag.iter() {
        datagram.extend_from_slice(format!("{byte:02x}").as_bytes());
    }
    datagram.push(b'\n');
    datagram.extend_from_slice(payload);
    datagram
}

/// Why a datagram was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unsigned")]
    Unsigned,
    #[error("malformed signature header")]
    Malformed,
    #[error("a {0} where a {1} was expected")]
    WrongKind(&'static str, &'static str),
    #[error("signed with another key ({0})")]
    WrongKey(String),
    #[error("bad signature")]
    BadTag,
    #[error("timestamp {0} s from pmtr's clock")]
    Stale(i64),
    #[error("replayed")]
    Replayed,
}

/// True when `datagram` is framed as a signed one (whatever its validity).
pub fn is_signed(datagram: &[u8]) -> bool {
    datagram.starts_with(MAGIC.as_bytes()) && datagram.get(MAGIC.len()) == Some(&b' ')
}

/// A verified datagram: its payload, timestamp and nonce.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified<'a> {
    pub payload: &'a [u8],
    pub unix_secs: u64,
    pub nonce: u64,
}

/// Checks the frame and the tag (in constant time) of `datagram`, which
/// must be of `kind`. Nothing of the payload is looked at before the tag
/// holds. Freshness and replay are [`ReplayGuard`]'s business.
pub fn verify<'a>(key: &Key, kind: Kind, datagram: &'a [u8]) -> Result<Verified<'a>, Refusal> {
    if !is_signed(datagram) {
        return Err(Refusal::Unsigned);
    }
    let newline = datagram
        .iter()
        .take(MAX_HEADER)
        .position(|&b| b == b'\n')
        .ok_or(Refusal::Malformed)?;
    let header = std::str::from_utf8(&datagram[..newline]).map_err(|_| Refusal::Malformed)?;
    let payload = &datagram[newline + 1..];
    let fields: Vec<&str> = header.split(' ').collect();
    let [_, kind_word, key_id, secs, nonce, tag] = fields[..] else {
        return Err(Refusal::Malformed);
    };
    let sent_kind = match kind_word {
        "report" => Kind::Report,
        "control" => Kind::Control,
        _ => return Err(Refusal::Malformed),
    };
    let unix_secs: u64 = secs.parse().map_err(|_| Refusal::Malformed)?;
    if nonce.len() != 16 {
        return Err(Refusal::Malformed);
    }
    let nonce = u64::from_str_radix(nonce, 16).map_err(|_| Refusal::Malformed)?;
    let tag = decode_hex(tag).ok_or(Refusal::Malformed)?;
    if key_id != key.id {
        return Err(Refusal::WrongKey(key_id.chars().take(16).collect()));
    }
    let signed_header = &header[..header.len() - tag.len() * 2 - 1];
    key.mac(signed_header, payload)
        .verify_slice(&tag)
        .map_err(|_| Refusal::BadTag)?;
    if sent_kind != kind {
        return Err(Refusal::WrongKind(sent_kind.word(), kind.word()));
    }
    Ok(Verified {
        payload,
        unix_secs,
        nonce,
    })
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Refuses control datagrams that are too old, from the future, or seen
/// before. Remembers what it accepted for as long as it could be replayed
/// (the skew window), within a fixed capacity.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashSet<(u64, u64)>,
    order: VecDeque<(u64, u64)>,
}

impl ReplayGuard {
    /// Accepts a verified datagram at `now_secs` (Unix time), once.
    pub fn admit(&mut self, verified: &Verified<'_>, now_secs: u64) -> Result<(), Refusal> {
        let skew = verified.unix_secs as i64 - now_secs as i64;
        if skew.unsigned_abs() > MAX_SKEW_SECS {
            return Err(Refusal::Stale(skew));
        }
        // Forget what can no longer be replayed (outside the window).
        while let Some(&(secs, _)) = self.order.front() {
            if secs + MAX_SKEW_SECS < now_secs || self.order.len() >= REPLAY_CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            } else {
                break;
            }
        }
        let entry = (verified.unix_secs, verified.nonce);
        if !self.seen.insert(entry) {
            return Err(Refusal::Replayed);
        }
        self.order.push_back(entry);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new(b"correct horse battery staple\n").unwrap()
    }

    #[test]
    fn keys_need_sixteen_bytes_and_lose_the_final_newline() {
        assert_eq!(Key::new(b"short\n").unwrap_err(), KeyError::TooShort);
        assert_eq!(
            Key::new(b"0123456789abcdef\n").unwrap().secret,
            b"0123456789abcdef"
        );
        assert_eq!(key().id().len(), 8);
        assert_ne!(
            key().id(),
            Key::new(b"another key of some length").unwrap().id()
        );
    }

    #[test]
    fn good_datagrams_verify() {
        let datagram = sign(&key(), Kind::Control, 1_700_000_000, 42, b"disable web");
        let text = String::from_utf8(datagram.clone()).unwrap();
        assert!(text.starts_with(&format!(
            "PMTR1 control {} 1700000000 000000000000002a ",
            key().id()
        )));
        let verified = verify(&key(), Kind::Control, &datagram).unwrap();
        assert_eq!(
            verified,
            Verified {
                payload: b"disable web",
                unix_secs: 1_700_000_000,
                nonce: 42
            }
        );
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.admit(&verified, 1_700_000_010), Ok(()));
    }

    /// The worked example of docs/PROTOCOL.md, computed independently
    /// (Python's hashlib and hmac).
    #[test]
    fn the_documented_example() {
        let key = Key::new(b"correct horse battery staple").unwrap();
        assert_eq!(key.id(), "c4bbcb1f");
        let datagram = sign(
            &key,
            Kind::Control,
            1_795_600_000,
            0x9f3c_5a7e_21d4_b6a8,
            b"disable web",
        );
        assert_eq!(
            String::from_utf8(datagram).unwrap(),
            "PMTR1 control c4bbcb1f 1795600000 9f3c5a7e21d4b6a8 \
             ca0c8a0be567869f05c9b4aeba39d1ba3277b20c441c40b381b3d9a19f6b964d\ndisable web"
        );
    }

    #[test]
    fn forged_truncated_wrong_key_and_unsigned_are_refused() {
        let datagram = sign(&key(), Kind::Control, 1_700_000_000, 7, b"disable web");
        let mut forged = datagram.clone();
        let last = forged.len() - 1;
        forged[last] = b'x'; // "disable wex"
        assert_eq!(verify(&key(), Kind::Control, &forged), Err(Refusal::BadTag));
        let mut retimed = String::from_utf8(datagram.clone()).unwrap();
        retimed = retimed.replacen("1700000000", "1700000001", 1);
        assert_eq!(
            verify(&key(), Kind::Control, retimed.as_bytes()),
            Err(Refusal::BadTag)
        );
        for cut in [5, 20, 60, 100] {
            assert!(
                verify(&key(), Kind::Control, &datagram[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let other = Key::new(b"a different secret key").unwrap();
        assert!(matches!(
            verify(&other, Kind::Control, &datagram),
            Err(Refusal::WrongKey(_))
        ));
        assert_eq!(
            verify(&key(), Kind::Control, b"disable web"),
            Err(Refusal::Unsigned)
        );
        assert_eq!(
            verify(&key(), Kind::Report, &datagram),
            Err(Refusal::WrongKind("control", "report"))
        );
        assert_eq!(
            verify(&key(), Kind::Control, b"PMTR1 \xff\xfe\n"),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            verify(&key(), Kind::Control, b"PMTR1 no newline at all"),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn stale_future_and_replayed_are_refused() {
        let mut guard = ReplayGuard::default();
        let now = 1_700_000_000;
        for (secs, expected) in [
            (now - 31, Err(Refusal::Stale(-31))),
            (now + 31, Err(Refusal::Stale(31))),
            (now - 30, Ok(())),
            (now + 30, Ok(())),
        ] {
            let datagram = sign(&key(), Kind::Control, secs, 1, b"enable a");
            let verified = verify(&key(), Kind::Control, &datagram).unwrap();
            assert_eq!(guard.admit(&verified, now), expected, "{secs}");
        }
        let datagram = sign(&key(), Kind::Control, now, 99, b"enable a");
        let verified = verify(&key(), Kind::Control, &datagram).unwrap();
        assert_eq!(guard.admit(&verified, now), Ok(()));
        assert_eq!(guard.admit(&verified, now + 5), Err(Refusal::Replayed));
    }

    #[test]
    fn the_replay_cache_forgets_what_is_out_of_the_window() {
        let mut guard = ReplayGuard::default();
        for nonce in 0..100 {
            let datagram = sign(&key(), Kind::Control, 1000, nonce, b"x");
            guard
                .admit(&verify(&key(), Kind::Control, &datagram).unwrap(), 1000)
                .unwrap();
        }
        assert_eq!(guard.len(), 100);
        let datagram = sign(&key(), Kind::Control, 1040, 1, b"x");
        guard
            .admit(&verify(&key(), Kind::Control, &datagram).unwrap(), 1040)
            .unwrap();
        assert_eq!(guard.len(), 1, "entries from before the window are gone");
    }
}
