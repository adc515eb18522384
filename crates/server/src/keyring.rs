//! The servers' keyring: the AES-256-GCM keys that seal Nomad Variables.
//!
//! A key's metadata goes through Raft (`KeyringUpdate`); the key itself only lives in each
//! server's keystore, `<data_dir>/server/keystore/<key id>.key` (mode 0600), so the Raft log,
//! its snapshots and `operator snapshot save` files hold variables sealed, never the means to
//! open them. The server that makes a key writes it to its keystore before proposing it; every
//! other server fetches the keys it lacks from its peers (`RaftTransport/FetchRootKey`, which
//! only servers may call), on its own and whenever it needs one. A variable's namespace and
//! path are its associated data: a sealed value copied to another path does not open.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use tonic::Status;
use yurt_proto::internal::raft_transport_client::RaftTransportClient;
use yurt_proto::internal::{EncryptedVariable, FetchRootKeyRequest};
use yurt_proto::v1::{RootKeyMeta, Variable};

use crate::cluster::Cluster;
use crate::raft::state_machine::StateHandle;

/// The one algorithm keys are made for (Nomad's name).
pub const ALGORITHM: &str = "aes256-gcm";
const KEY_LEN: usize = 32;
/// How long a request waits for a key this server lacks to arrive from its peers.
const FETCH_WAIT: Duration = Duration::from_secs(5);
/// How often a server looks for keys it lacks.
const REPLICATE_EVERY: Duration = Duration::from_millis(500);

/// This server's keys, by ID.
#[derive(Clone)]
pub struct Keyring {
    dir: PathBuf,
    keys: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    state: StateHandle,
    cluster: Cluster,
    dialer: yurt_tls::Dialer,
}

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{what}: {e}"))
}

/// A key ID is a UUID: nothing else may name a file in the keystore.
fn valid_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok()
}

impl Keyring {
    /// Opens the keystore in `dir` (made if missing) and reads its keys.
    pub fn open(
        dir: PathBuf,
        state: StateHandle,
        cluster: Cluster,
        dialer: yurt_tls::Dialer,
    ) -> std::io::Result<Keyring> {
        std::fs::create_dir_all(&dir)?;
        let mut keys = HashMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".key"))
                .filter(|id| valid_id(id))
            else {
                continue;
            };
            let key = std::fs::read(&path)?;
            if key.len() == KEY_LEN {
                keys.insert(id.to_string(), key);
            } else {
                tracing::warn!(path = %path.display(), "ignoring a keystore file that is not a key");
            }
        }
        Ok(Keyring {
            dir,
            keys: Arc::new(Mutex::new(keys)),
            state,
            cluster,
            dialer,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key with this ID, if this server has it.
    pub fn material(&self, id: &str) -> Option<Vec<u8>> {
        self.lock().get(id).cloned()
    }

    /// Writes a key to the keystore (atomically, readable by this user only) and keeps it.
    fn store(&self, id: &str, key: &[u8]) -> Result<(), Status> {
        if !valid_id(id) || key.len() != KEY_LEN {
            return Err(Status::invalid_argument(format!(
                "not a keyring key: {id:?}"
            )));
        }
        let path = self.dir.join(format!("{id}.key"));
        let tmp = self.dir.join(format!(".{id}.tmp"));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(key)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| internal(&format!("cannot write {}", path.display()), e))?;
        self.lock().insert(id.to_string(), key.to_vec());
        Ok(())
    }

    /// Makes a new key in this server's keystore; the caller proposes its metadata.
    pub fn generate(&self, now_unix_ms: i64) -> Result<RootKeyMeta, Status> {
        let mut key = vec![0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| Status::internal("no randomness for a new key"))?;
        let meta = RootKeyMeta {
            key_id: uuid::Uuid::new_v4().to_string(),
            algorithm: ALGORITHM.into(),
            create_time_unix_ms: now_unix_ms,
            ..RootKeyMeta::default()
        };
        self.store(&meta.key_id, &key)?;
        Ok(meta)
    }

    /// The key `id`, fetched from the other servers when this one lacks it (bounded).
    async fn key(&self, id: &str) -> Result<LessSafeKey, Status> {
        let deadline = tokio::time::Instant::now() + FETCH_WAIT;
        loop {
            if let Some(k) = self.material(id) {
                let unbound = UnboundKey::new(&AES_256_GCM, &k)
                    .map_err(|_| Status::internal(format!("key {id} is damaged")))?;
                return Ok(LessSafeKey::new(unbound));
            }
            self.fetch(id).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::unavailable(format!(
                    "this server does not have key {id} of the keyring yet, and no other server gave it; try again, or ask another server"
                )));
            }
            if self.material(id).is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Asks each other server for key `id` until one has it.
    async fn fetch(&self, id: &str) {
        let me = self.cluster.me().id;
        for (member, alive) in self.cluster.members(true) {
            if member.id == me || !alive || member.left {
                continue;
            }
            let Ok(endpoint) = self.dialer.endpoint(&member.addr, yurt_tls::Peer::Server) else {
                continue;
            };
            let asked = async {
                let channel = endpoint
                    .connect_timeout(Duration::from_secs(1))
                    .connect()
                    .await
                    .ok()?;
                RaftTransportClient::new(channel)
                    .fetch_root_key(FetchRootKeyRequest {
                        key_id: id.to_string(),
                    })
                    .await
                    .ok()
            };
            let Ok(Some(reply)) = tokio::time::timeout(Duration::from_secs(2), asked).await else {
                continue;
            };
            let reply = reply.into_inner();
            if self.store(id, &reply.key).is_ok() {
                tracing::info!(key = id, from = %member.name, "fetched a key of the keyring");
                return;
            }
        }
    }

    /// Fetches, for as long as the server runs, the keys the state names that this server lacks.
    pub async fn replicate(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let missing: Vec<String> = self.state.read(|s| {
                s.root_keys
                    .keys()
                    .filter(|id| !self.lock().contains_key(*id))
                    .cloned()
                    .collect()
            });
            for id in missing {
                self.fetch(&id).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(REPLICATE_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Seals a variable's items with key `key_id`.
    pub async fn seal(&self, key_id: &str, v: &Variable) -> Result<EncryptedVariable, Status> {
        let key = self.key(key_id).await?;
        let mut data = serde_json::to_vec(&v.items).map_err(|e| internal("encode items", e))?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Status::internal("no randomness for a nonce"))?;
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(&v.namespace, &v.path)),
            &mut data,
        )
        .map_err(|_| Status::internal("cannot seal the variable"))?;
        Ok(EncryptedVariable {
            meta: Some(Variable {
                items: Default::default(),
                ..v.clone()
            }),
            key_id: key_id.to_string(),
            nonce: nonce.to_vec(),
            ciphertext: data,
        })
    }

    /// Opens a sealed variable: its metadata with its items.
    pub async fn open_sealed(&self, sealed: &EncryptedVariable) -> Result<Variable, Status> {
        let meta = sealed.meta.clone().unwrap_or_default();
        let key = self.key(&sealed.key_id).await?;
        let damaged = || {
            Status::data_loss(format!(
                "variable {:?} in namespace {:?} does not open with key {}: it is damaged",
                meta.path, meta.namespace, sealed.key_id
            ))
        };
        let nonce = Nonce::try_assume_unique_for_key(&sealed.nonce).map_err(|_| damaged())?;
        let mut data = sealed.ciphertext.clone();
        let plain = key
            .open_in_place(
                nonce,
                Aad::from(aad(&meta.namespace, &meta.path)),
                &mut data,
            )
            .map_err(|_| damaged())?;
        let items = serde_json::from_slice(plain).map_err(|_| damaged())?;
        Ok(Variable { items, ..meta })
    }
}

/// The associated data of a sealed variable: where it lives.
fn aad(namespace: &str, path: &str) -> Vec<u8> {
    format!("{namespace}\0{path}").into_bytes()
}
