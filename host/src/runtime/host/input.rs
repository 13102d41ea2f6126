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
    /// The next chunk of at most `max` bytes (capped at [`MAX_CHUNK_BYTES`]), full unless the
    /// file ends: fewer, larger chunks mean fewer host calls. Empty at end of file.
    async fn read_chunk(&mut self, max: u32) -> std::io::Result<Vec<u8>> {
        let want = max.clamp(1, MAX_CHUNK_BYTES) as usize;
        let mut chunk = Vec::with_capacity(want);
        (&mut self.reader)
            .take(want as u64)
            .read_to_end(&mut chunk)
            .await?;
        Ok(chunk)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(bytes: Vec<u8>) -> InputFile {
        InputFile {
            name: "f".to_owned(),
            size: bytes.len() as u64,
            content_type: None,
            reader: Box::new(std::io::Cursor::new(bytes)),
        }
    }

    #[tokio::test]
    async fn chunks_are_full_capped_and_empty_at_the_end() {
        let mut input = file(vec![7; 3 * 1024 * 1024]);
        assert_eq!(input.read_chunk(10).await.unwrap().len(), 10);
        assert_eq!(
            input.read_chunk(u32::MAX).await.unwrap().len(),
            MAX_CHUNK_BYTES as usize
        );
        assert_eq!(
            input.read_chunk(0).await.unwrap().len(),
            1,
            "a zero request still progresses"
        );
        let mut total = 10 + MAX_CHUNK_BYTES as usize + 1;
        loop {
            let chunk = input.read_chunk(MAX_CHUNK_BYTES).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            total += chunk.len();
        }
        assert_eq!(total, 3 * 1024 * 1024);
    }
}
