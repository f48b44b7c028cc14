//! The loopback suite (tidings-net's testkit) on async-std: real sockets on 127.0.0.1.

tidings_net::loopback_suite!(tidings_async_std::AsyncStd, async_std::task::block_on);
