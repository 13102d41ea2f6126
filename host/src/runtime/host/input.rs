//! `mysimbdp:ingest/batch-input`: the staged file, handed to the app in bounded chunks.

use crate::runtime::bindings::batch::mysimbdp::ingest::batch_input::{Host, HostSource};
use crate::runtime::failure::Violation;
use crate::runtime::state::HostState;
use tokio::io::{AsyncRead, AsyncReadExt};
use wasmtime::component::Resource;

/// The most one `read` returns, whatever the app asks for: bounds the host's and the
/// guest's memory per call.
pub const MAX_CHUNK_BYTES: u32 = 1024 * 1024;

/// A staged file opened for one call of a batch app.
pub struct InputFile {
    /// The name the tenant uploaded it under.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its content type, if known.
    pub content_type: Option<String>,
    /// Its bytes, read sequentially.
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
}

impl InputFile {
    fn read_chunk(
        &mut self,
        max: u32,
    ) -> impl Future<Output = std::io::Result<Vec<u8>>> + Send + '_ {
        let want = max.clamp(1, MAX_CHUNK_BYTES) as usize;
        async move {
            let mut chunk = Vec::with_capacity(want);
            // Fill the chunk unless the file ends: fewer, larger chunks mean fewer host calls.
            while chunk.len() < want {
                let n = (&mut self.reader)
                    .take((want - chunk.len()) as u64)
                    .read_to_end(&mut chunk)
                    .await?;
                if n == 0 {
                    break;
                }
            }
            Ok(chunk)
        }
    }
}

impl Host for HostState {}

impl HostSource for HostState {
    async fn name(&mut self, file: Resource<InputFile>) -> wasmtime::Result<String> {
        self.call.charge_host_call()?;
        Ok(self.table.get(&file)?.name.clone())
    }

    async fn size(&mut self, file: Resource<InputFile>) -> wasmtime::Result<u64> {
        self.call.charge_host_call()?;
        Ok(self.table.get(&file)?.size)
    }

    async fn content_type(
        &mut self,
        file: Resource<InputFile>,
    ) -> wasmtime::Result<Option<String>> {
        self.call.charge_host_call()?;
        Ok(self.table.get(&file)?.content_type.clone())
    }

    async fn read(&mut self, file: Resource<InputFile>, max: u32) -> wasmtime::Result<Vec<u8>> {
        self.call.charge_host_call()?;
        let file = self.table.get_mut(&file)?;
        let name = file.name.clone();
        file.read_chunk(max)
            .await
            .map_err(|e| Violation::Host(format!("reading staged file {name:?}: {e}")).into())
    }

    async fn drop(&mut self, file: Resource<InputFile>) -> wasmtime::Result<()> {
        self.table.delete(file)?;
        Ok(())
    }
}
