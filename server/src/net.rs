//! Outgoing HTTP: the one place clients are built (LLM providers, the model hub, remote image
//! backends), so TLS is set up the same way everywhere. A leaf: it depends on nothing in Easel.
//!
//! TLS goes through rustls with the `ring` provider: aws-lc-sys, reqwest's default, needs a C
//! toolchain with cmake-like steps and minutes of build on small machines.

/// Installs the process-wide TLS provider (idempotent). reqwest panics without one.
pub fn install_tls_provider() {
    // Fails only if a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client builder with TLS ready; callers add their timeouts.
pub fn http_client() -> reqwest::ClientBuilder {
    install_tls_provider();
    reqwest::Client::builder()
}
