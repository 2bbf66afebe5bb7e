//! An in-memory cloud for tests of the orchestrator: instances per pool, launches and
//! terminations that change them, and injectable failures per operation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::{Cause, CloudError, CloudErrorKind, Operation, Provider};
use crate::config::scaling::{TAG_LAUNCH_TOKEN, TAG_POOL};
use crate::config::{Launcher, PoolConfig};
use crate::model::{Instance, InstanceState};

#[derive(Debug, Default)]
struct Inner {
    instances: BTreeMap<String, Vec<Instance>>,
    failing: BTreeSet<(String, Operation)>,
    launched: u32,
    calls: Vec<String>,
}

/// Instances keyed by pool name.
#[derive(Debug, Default)]
pub(crate) struct FakeCloud {
    inner: Mutex<Inner>,
}

impl FakeCloud {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake cloud lock")
    }

    /// Sets what listing `pool` returns.
    pub(crate) fn set(&self, pool: &str, instances: Vec<Instance>) {
        self.inner().instances.insert(pool.to_owned(), instances);
    }

    /// The instances of `pool` now.
    pub(crate) fn instances(&self, pool: &str) -> Vec<Instance> {
        self.inner()
            .instances
            .get(pool)
            .cloned()
            .unwrap_or_default()
    }

    /// Makes `operation` fail for `pool` until [`FakeCloud::heal`].
    pub(crate) fn fail(&self, pool: &str, operation: Operation) {
        self.inner().failing.insert((pool.to_owned(), operation));
    }

    pub(crate) fn heal(&self) {
        self.inner().failing.clear();
    }

    /// Every mutating call made, in order, as `launch POOL COUNT TOKEN` / `terminate POOL IDS`.
    pub(crate) fn calls(&self) -> Vec<String> {
        self.inner().calls.clone()
    }

    fn check(&self, pool: &PoolConfig, operation: Operation) -> Result<(), CloudError> {
        if self
            .inner()
            .failing
            .contains(&(pool.name.clone(), operation))
        {
            return Err(CloudError {
                pool: pool.name.clone(),
                operation,
                kind: CloudErrorKind::Transient,
                cause: Cause::Injected,
            });
        }
        Ok(())
    }
}

impl Provider for FakeCloud {
    async fn list(&self, pool: &PoolConfig) -> Result<Vec<Instance>, CloudError> {
        self.check(pool, Operation::List)?;
        Ok(self.instances(&pool.name))
    }

    async fn find_by_token(
        &self,
        pool: &PoolConfig,
        token: &str,
    ) -> Result<Vec<String>, CloudError> {
        self.check(pool, Operation::FindLaunch)?;
        Ok(self
            .instances(&pool.name)
            .into_iter()
            .filter(|instance| {
                instance.tags.get(TAG_LAUNCH_TOKEN).map(String::as_str) == Some(token)
            })
            .map(|instance| instance.id)
            .collect())
    }

    async fn launch(
        &self,
        pool: &PoolConfig,
        _launcher: &Launcher,
        count: u32,
        token: &str,
    ) -> Result<Vec<String>, CloudError> {
        self.check(pool, Operation::Launch)?;
        let mut inner = self.inner();
        inner
            .calls
            .push(format!("launch {} {count} {token}", pool.name));
        let mut ids = Vec::new();
        for _ in 0..count {
            inner.launched += 1;
            let number = inner.launched;
            let id = format!("i-fake{number:04}");
            let tags = crate::model::Tags::from([
                (TAG_POOL.to_owned(), pool.name.clone()),
                (TAG_LAUNCH_TOKEN.to_owned(), token.to_owned()),
            ]);
            inner
                .instances
                .entry(pool.name.clone())
                .or_default()
                .push(Instance {
                    id: id.clone(),
                    state: InstanceState::Pending,
                    private_ip: Some(format!("127.0.0.{}", number % 250 + 2)),
                    public_ip: None,
                    port: None,
                    launch_time: None,
                    zone: None,
                    image_id: None,
                    tags,
                });
            ids.push(id);
        }
        Ok(ids)
    }

    async fn terminate(
        &self,
        pool: &PoolConfig,
        _launcher: &Launcher,
        ids: &[String],
    ) -> Result<(), CloudError> {
        self.check(pool, Operation::Terminate)?;
        let mut inner = self.inner();
        inner
            .calls
            .push(format!("terminate {} {}", pool.name, ids.join(",")));
        if let Some(instances) = inner.instances.get_mut(&pool.name) {
            instances.retain(|instance| !ids.contains(&instance.id));
        }
        Ok(())
    }
}
