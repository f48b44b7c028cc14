//! The loopback suite (tidings-net's testkit) on smol: real sockets on 127.0.0.1.

tidings_net::loopback_suite!(tidings_smol::Smol, smol::block_on);
