//! OCI vocabulary shared by every layer of imgctl: digests, chain IDs and (in
//! `reference`) image references. Pure: no I/O.

mod digest;

pub use digest::{chain_id, Digest, DigestError, Digester};
