//! What the side thread of a load learns from each file entry while it is written to
//! the store: the diff ID of a compressed one (decompressed, bounded like a layer
//! apply) and, for an entry that is a layer, the size report's listing of it
//! ([`crate::layer::index`]), recorded in `cache/size` when the layer is published
//! so the first `imgctl size` of a loaded image reads no blob. An entry that is not a
//! tar (a config, a manifest) simply has no listing.

use std::io::{self, Read};

use super::input::ChannelReader;
use crate::layer::index::{self, Listing};
use crate::layer::{self, Compression, Limits};
use crate::oci::{Digest, Digester};

const CHUNK: usize = 256 * 1024;

/// What [`inspect`] found.
pub(super) struct Inspected {
    /// The digest of the uncompressed content; `None` when the entry is not
    /// compressed (its blob digest is that digest); why it could not be decompressed.
    pub diff_id: Result<Option<Digest>, String>,
    /// The listing, when the content is a layer tar.
    pub index: Option<Listing>,
}

/// Read one entry's content (sent in chunks by the ingest loop) to its end.
pub(super) fn inspect(rd: ChannelReader, compression: Compression) -> Inspected {
    let (tx, work) = index::side_list(Limits::default());
    std::thread::scope(|s| {
        let lister = s.spawn(work);
        let mut side = Some(tx);
        let diff_id = uncompress(rd, compression, &mut side);
        drop(side);
        let index = match lister.join() {
            Ok(Ok(l)) if diff_id.is_ok() => Some(l),
            _ => None,
        };
        Inspected { diff_id, index }
    })
}

fn uncompress(
    rd: ChannelReader,
    compression: Compression,
    side: &mut Option<std::sync::mpsc::SyncSender<index::Chunk>>,
) -> Result<Option<Digest>, String> {
    let mut dec = layer::decoder(rd, compression, "").map_err(|e| e.to_string())?;
    let limit = Limits::default().max_bytes;
    let mut d = (compression != Compression::None).then(Digester::new);
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("{} stream: {e}", compression.name())),
        };
        if let Some(d) = &mut d {
            d.update(&buf[..n]);
        }
        index::feed(side, &buf[..n]);
        total += n as u64;
        if total > limit && d.is_some() {
            return Err(format!("more than {limit} bytes uncompressed"));
        }
        if d.is_none() && side.is_none() {
            // Not compressed and not a layer: nothing left to learn; the sender
            // sees a closed channel and stops sending.
            return Ok(None);
        }
    }
    Ok(d.map(Digester::finish))
}
