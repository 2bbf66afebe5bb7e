//! An in-memory provider for tests of the orchestrator: instances per pool, and injectable failures.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{CloudError, CloudErrorKind, Instance, Provider};
use crate::config::PoolConfig;

/// Instances keyed by pool name; a pool set to fail returns that error.
#[derive(Debug, Default)]
pub struct FakeCloud {
    pools: Mutex<BTreeMap<String, Result<Vec<Instance>, CloudErrorKind>>>,
}

impl FakeCloud {
    /// Sets what listing `pool` returns.
    pub fn set(&self, pool: &str, instances: Vec<Instance>) {
        self.pools
            .lock()
            .expect("fake cloud lock")
            .insert(pool.to_owned(), Ok(instances));
    }

    /// Makes listing `pool` fail.
    pub fn fail(&self, pool: &str, kind: CloudErrorKind) {
        self.pools
            .lock()
            .expect("fake cloud lock")
            .insert(pool.to_owned(), Err(kind));
    }
}

impl Provider for FakeCloud {
    async fn list(&self, pool: &PoolConfig) -> Result<Vec<Instance>, CloudError> {
        match self.pools.lock().expect("fake cloud lock").get(&pool.name) {
            Some(Ok(instances)) => Ok(instances.clone()),
            Some(Err(kind)) => Err(CloudError {
                pool: pool.name.clone(),
                kind: *kind,
                message: "injected failure".to_owned(),
            }),
            None => Ok(Vec::new()),
        }
    }
}
