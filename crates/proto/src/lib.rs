//! Generated code for Yurt's protobuf API. The `.proto` files in `proto/` are the single source of
//! truth; this crate holds nothing but what `build.rs` generates from them.

#![allow(clippy::all, unreachable_pub, missing_docs)]

/// Module tree mirroring the proto packages, so generated cross-package paths resolve.
pub mod yurt {
    pub mod v1 {
        tonic::include_proto!("yurt.v1");
    }
    pub mod internal {
        pub mod v1 {
            tonic::include_proto!("yurt.internal.v1");
        }
    }
}

/// Server-to-server messages, package `yurt.internal.v1`.
pub use yurt::internal::v1 as internal;
/// The public API, package `yurt.v1`.
pub use yurt::v1;

/// Every `.proto` file's descriptor, encoded (`FileDescriptorSet`): served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/yurt_descriptor.bin"));
