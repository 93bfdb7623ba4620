//! Checkpoints as C2SP tlog-checkpoint notes, Ed25519 signed in C2SP signed-note
//! form, and the key files (the `golang.org/x/mod/sumdb/note` encodings).
//!
//! A checkpoint body is three lines: the origin (`capsule.log/<log id>`), the tree
//! size in decimal, and the root hash in standard base64. A signed note is the body,
//! an empty line, then one line per signature:
//! `— <key name> <base64(4-byte key id || 64-byte signature)>` (U+2014 EM DASH).
//! The key id is the first four bytes of SHA-256(key name || "\n" || 0x01 || public key).

use std::fmt;
use std::path::Path;

use base64ct::{Base64, Encoding};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// The C2SP signature type byte for Ed25519.
const ED25519_ALGORITHM: u8 = 0x01;
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Errors in checkpoint notes and key files.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    #[error("malformed checkpoint note: {0}")]
    Malformed(&'static str),
    #[error("malformed key: {0}")]
    BadKey(&'static str),
    #[error("cannot generate a key: no system randomness ({0})")]
    Randomness(String),
}

/// A tree head: which log, how many records, and the Merkle root over them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note body that is signed (and that C2SP tools read).
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, Base64::encode_string(&self.root.0))
    }
}

/// One signature line of a signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    pub key_name: String,
    pub key_id: [u8; 4],
    pub signature: [u8; 64],
}

impl NoteSignature {
    /// `base64(key id || signature)`, the last field of the signature line.
    pub fn encoded(&self) -> String {
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&self.signature);
        Base64::encode_string(&blob)
    }

    pub fn decode(key_name: &str, encoded: &str) -> Result<NoteSignature, NoteError> {
        let blob = Base64::decode_vec(encoded).map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if blob.len() != 68 {
            return Err(NoteError::Malformed("an Ed25519 note signature is 4 + 64 bytes"));
        }
        if !is_valid_key_name(key_name) {
            return Err(NoteError::Malformed("bad key name in signature line"));
        }
        Ok(NoteSignature {
            key_name: key_name.to_owned(),
            key_id: blob[..4].try_into().expect("4 bytes"),
            signature: blob[4..].try_into().expect("64 bytes"),
        })
    }
}

/// A checkpoint with zero or more signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub signatures: Vec<NoteSignature>,
}

impl SignedCheckpoint {
    /// The note text: the body alone when unsigned, else body, blank line, signatures.
    pub fn to_note(&self) -> String {
        let mut text = self.checkpoint.body();
        if !self.signatures.is_empty() {
            text.push('\n');
            for sig in &self.signatures {
                text.push_str(&format!("{SIGNATURE_PREFIX}{} {}\n", sig.key_name, sig.encoded()));
            }
        }
        text
    }

    /// Parses what [`SignedCheckpoint::to_note`] prints. Extension lines are rejected:
    /// capsule writes none.
    pub fn parse(text: &str) -> Result<SignedCheckpoint, NoteError> {
        let (body, signature_block) = match text.split_once("\n\n") {
            Some((body, rest)) => (format!("{body}\n"), Some(rest)),
            None => (text.to_owned(), None),
        };
        if !body.ends_with('\n') {
            return Err(NoteError::Malformed("the checkpoint must end with a newline"));
        }
        let lines: Vec<&str> = body[..body.len() - 1].split('\n').collect();
        let [origin, size, root] = lines[..] else {
            return Err(NoteError::Malformed("expected exactly three lines: origin, size, root hash"));
        };
        if origin.is_empty() || origin.chars().any(char::is_control) {
            return Err(NoteError::Malformed("empty or invalid origin line"));
        }
        let size = super::canonical::parse_canonical_u64(size)
            .ok_or(NoteError::Malformed("tree size is not a decimal number"))?;
        let root_bytes = Base64::decode_vec(root).map_err(|_| NoteError::Malformed("root hash is not base64"))?;
        let root = Hash(root_bytes.try_into().map_err(|_| NoteError::Malformed("root hash is not 32 bytes"))?);
        let mut signatures = Vec::new();
        if let Some(block) = signature_block {
            let block =
                block.strip_suffix('\n').ok_or(NoteError::Malformed("the signature block must end with a newline"))?;
            for line in block.split('\n') {
                let rest = line
                    .strip_prefix(SIGNATURE_PREFIX)
                    .ok_or(NoteError::Malformed("signature lines start with an em dash and a space"))?;
                let (name, encoded) =
                    rest.split_once(' ').ok_or(NoteError::Malformed("signature line: name and signature"))?;
                signatures.push(NoteSignature::decode(name, encoded)?);
            }
            if signatures.is_empty() {
                return Err(NoteError::Malformed("empty signature block"));
            }
        }
        Ok(SignedCheckpoint { checkpoint: Checkpoint { origin: origin.to_owned(), size, root }, signatures })
    }

    pub fn read(path: &Path) -> Result<SignedCheckpoint, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read checkpoint {}: {e}", path.display()))?;
        SignedCheckpoint::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(b"\n")
        .chain_update([ED25519_ALGORITHM])
        .chain_update(public.as_bytes())
        .finalize();
    digest[..4].try_into().expect("4 bytes")
}

fn split_key(text: &str, fields: usize) -> Result<Vec<&str>, NoteError> {
    // splitn: the base64 key material in the last field may itself contain '+'.
    let parts: Vec<&str> = text.trim_end_matches('\n').splitn(fields, '+').collect();
    if parts.len() != fields {
        return Err(NoteError::BadKey("wrong number of '+'-separated fields"));
    }
    Ok(parts)
}

fn decode_key_material(name: &str, id_hex: &str, material: &str) -> Result<[u8; 32], NoteError> {
    if !is_valid_key_name(name) {
        return Err(NoteError::BadKey("invalid key name"));
    }
    if super::canonical::parse_hex::<4>(id_hex).is_none() {
        return Err(NoteError::BadKey("key id must be 8 lower-case hex digits"));
    }
    let bytes = Base64::decode_vec(material).map_err(|_| NoteError::BadKey("key material is not base64"))?;
    match bytes.split_first() {
        Some((&ED25519_ALGORITHM, key)) if key.len() == 32 => Ok(key.try_into().expect("32 bytes")),
        _ => Err(NoteError::BadKey("only Ed25519 keys (type 0x01, 32 bytes) are supported")),
    }
}

/// A public key that verifies checkpoint signatures: `<name>+<key id hex>+<base64(0x01 || key)>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    pub fn parse(text: &str) -> Result<NoteVerifier, NoteError> {
        let parts = split_key(text, 3)?;
        let raw = decode_key_material(parts[0], parts[1], parts[2])?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| NoteError::BadKey("not a valid Ed25519 public key"))?;
        let id = key_id(parts[0], &key);
        if super::canonical::hex(&id) != parts[1] {
            return Err(NoteError::BadKey("key id does not match the name and key"));
        }
        Ok(NoteVerifier { name: parts[0].to_owned(), id, key })
    }

    pub fn read(path: &Path) -> Result<NoteVerifier, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read public key {}: {e}", path.display()))?;
        NoteVerifier::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn encode(&self) -> String {
        let mut material = vec![ED25519_ALGORITHM];
        material.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, super::canonical::hex(&self.id), Base64::encode_string(&material))
    }

    /// Whether `checkpoint` carries a valid signature by this key. Signatures by
    /// other keys are ignored, as C2SP prescribes.
    pub fn verify(&self, checkpoint: &SignedCheckpoint) -> SignatureCheck {
        let body = checkpoint.checkpoint.body();
        let mut ours =
            checkpoint.signatures.iter().filter(|s| s.key_name == self.name && s.key_id == self.id).peekable();
        if ours.peek().is_none() {
            return SignatureCheck::Missing;
        }
        if ours.any(|s| self.key.verify(body.as_bytes(), &Signature::from_bytes(&s.signature)).is_ok()) {
            SignatureCheck::Valid
        } else {
            SignatureCheck::Invalid
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureCheck {
    Valid,
    /// No signature by this key.
    Missing,
    /// A signature claims to be by this key but does not verify.
    Invalid,
}

/// A private key that signs checkpoints: `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>`.
pub struct NoteSigner {
    name: String,
    id: [u8; 4],
    key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner").field("name", &self.name).finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A fresh key from the system's randomness.
    pub fn generate(name: &str) -> Result<NoteSigner, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::BadKey("a key name is non-empty, with no '+' and no whitespace"));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| NoteError::Randomness(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        Ok(NoteSigner { name: name.to_owned(), id: key_id(name, &key.verifying_key()), key })
    }

    pub fn parse(text: &str) -> Result<NoteSigner, NoteError> {
        let parts = split_key(text, 5)?;
        if parts[..2] != ["PRIVATE", "KEY"] {
            return Err(NoteError::BadKey("a private key starts with PRIVATE+KEY+"));
        }
        let seed = decode_key_material(parts[2], parts[3], parts[4])?;
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(parts[2], &key.verifying_key());
        if super::canonical::hex(&id) != parts[3] {
            return Err(NoteError::BadKey("key id does not match the name and key"));
        }
        Ok(NoteSigner { name: parts[2].to_owned(), id, key })
    }

    pub fn read(path: &Path) -> Result<NoteSigner, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read signing key {}: {e}", path.display()))?;
        NoteSigner::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn encode(&self) -> String {
        let mut material = vec![ED25519_ALGORITHM];
        material.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{}+{}", self.name, super::canonical::hex(&self.id), Base64::encode_string(&material))
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    pub fn sign(&self, checkpoint: &Checkpoint) -> NoteSignature {
        NoteSignature {
            key_name: self.name.clone(),
            key_id: self.id,
            signature: self.key.sign(checkpoint.body().as_bytes()).to_bytes(),
        }
    }
}

/// The environment variable naming the file that holds the log signing key.
pub const SIGNING_KEY_ENV: &str = "CAPSULE_LOG_SIGNING_KEY";

/// The signing key named by `CAPSULE_LOG_SIGNING_KEY`, if set.
pub fn signer_from_env() -> Result<Option<NoteSigner>, String> {
    match std::env::var_os(SIGNING_KEY_ENV) {
        None => Ok(None),
        Some(path) if path.is_empty() => Ok(None),
        Some(path) => NoteSigner::read(Path::new(&path)).map(Some),
    }
}

/// Writes `PREFIX.key` (mode 0600, created new) and `PREFIX.pub`; returns their paths.
pub fn write_key_pair(signer: &NoteSigner, prefix: &Path) -> std::io::Result<(std::path::PathBuf, std::path::PathBuf)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let with_suffix = |suffix: &str| {
        let mut name = prefix.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    let (private_path, public_path) = (with_suffix(".key"), with_suffix(".pub"));
    let mut private = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&private_path)?;
    private.write_all(format!("{}\n", signer.encode()).as_bytes())?;
    private.sync_all()?;
    let mut public = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&public_path)?;
    public.write_all(format!("{}\n", signer.verifier().encode()).as_bytes())?;
    public.sync_all()?;
    Ok((private_path, public_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint { origin: "capsule.log/00112233445566778899aabbccddeeff".into(), size: 42, root: Hash([7; 32]) }
    }

    #[test]
    fn keys_round_trip_and_sign() {
        let signer = NoteSigner::generate("test-key").unwrap();
        let signer = NoteSigner::parse(&signer.encode()).unwrap();
        let verifier = NoteVerifier::parse(&signer.verifier().encode()).unwrap();
        let signed = SignedCheckpoint { checkpoint: sample(), signatures: vec![signer.sign(&sample())] };
        let parsed = SignedCheckpoint::parse(&signed.to_note()).unwrap();
        assert_eq!(parsed, signed);
        assert_eq!(verifier.verify(&parsed), SignatureCheck::Valid);

        let mut other = parsed.clone();
        other.checkpoint.size = 43;
        assert_eq!(verifier.verify(&other), SignatureCheck::Invalid);
        let unsigned = SignedCheckpoint { checkpoint: sample(), signatures: vec![] };
        assert_eq!(verifier.verify(&unsigned), SignatureCheck::Missing);
        let stranger = NoteSigner::generate("test-key").unwrap();
        let by_stranger = SignedCheckpoint { checkpoint: sample(), signatures: vec![stranger.sign(&sample())] };
        assert_eq!(verifier.verify(&by_stranger), SignatureCheck::Missing, "same name, different key id");
    }

    /// The C2SP key id and note layout, checked against the example key of
    /// golang.org/x/mod/sumdb/note (its documentation's PeterNeumann key).
    #[test]
    fn go_note_example_key_parses() {
        let signer =
            NoteSigner::parse("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
                .unwrap();
        assert_eq!(signer.verifier().encode(), "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
    }

    #[test]
    fn malformed_notes_are_rejected() {
        let body = sample().body();
        for bad in [
            body.trim_end().to_owned(),
            format!("{body}extension\n"),
            body.replace("\n42\n", "\n042\n"),
            format!("{body}\n"),
            format!("{body}\n\u{2014} k AAAA\n"),
            format!("{body}\n- k {}\n", "A".repeat(92)),
        ] {
            assert!(SignedCheckpoint::parse(&bad).is_err(), "accepted {bad:?}");
        }
    }
}
