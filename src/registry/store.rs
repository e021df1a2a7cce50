//! Where registrations live beyond the process: a state directory (one
//! gateway) or Redis (replicas sharing one registry).

use super::sets::Sets;
use super::shared::{RedisStore, Saved};
use super::state_dir::StateDir;

#[derive(Debug, Clone)]
pub enum Store {
    Dir(StateDir),
    Redis(RedisStore),
}

impl Store {
    /// Whether other processes write too, so every change starts from a
    /// fresh read.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Redis(_))
    }

    /// The stored sets, and what was found damaged and left out.
    pub async fn load(&self) -> Result<(Sets, Vec<String>), String> {
        match self {
            Self::Dir(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || dir.load())
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
            Self::Redis(redis) => Ok((redis.load().await?, Vec::new())),
        }
    }

    /// Persists `next` durably before the caller acknowledges anything.
    pub async fn save(&self, base: &Sets, next: &Sets) -> Result<Saved, String> {
        match self {
            Self::Dir(dir) => {
                let (dir, next) = (dir.clone(), next.clone());
                tokio::task::spawn_blocking(move || dir.save(&next))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                Ok(Saved::Yes)
            }
            Self::Redis(redis) => redis.save(base, next).await,
        }
    }
}
