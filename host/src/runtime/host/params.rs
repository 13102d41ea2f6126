//! `mysimbdp:ingest/params`: the tenant's parameters for this app, read-only.

use crate::runtime::bindings::batch::mysimbdp::ingest::params::Host;
use crate::runtime::state::HostState;

impl Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        self.call.charge_host_call()?;
        Ok(self.call.params.get(&name).cloned())
    }

    async fn all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        self.call.charge_host_call()?;
        Ok(self
            .call
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
