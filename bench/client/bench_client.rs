//! Load tool for `bench/client/run.sh` (not a test).
//!
//! ```text
//! bench_client origin CA_PEM_OUT          # HTTPS origin (1 KiB answers); prints `listening on ADDR`
//! bench_client run PROXY URL N CA_PEM [fresh]   # N sequential GETs with tunnelkit::client::Client
//! ```
//! `run` prints requests per second.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("origin") => {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
            std::fs::write(&args[1], ck.cert.pem())?;
            let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
            let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)?;
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
            let l = TcpListener::bind("127.0.0.1:0").await?;
            println!("listening on {}", l.local_addr()?);
            loop {
                let (tcp, _) = l.accept().await?;
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper::service::service_fn(|_| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(vec![b'x'; 1024]))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        }
        Some("run") => {
            let n: usize = args[3].parse()?;
            let ca = std::fs::read(&args[4])?;
            let fresh = args.get(5).map(String::as_str) == Some("fresh");
            let client = tunnelkit::client::Client::builder()
                .proxy(args[1].clone())
                .keep_alive(!fresh)
                .add_root_pem(&ca)
                .build()?;
            let uri: hyper::Uri = args[2].parse()?;
            let start = Instant::now();
            for _ in 0..n {
                let resp = client.get(uri.clone()).await?;
                let body = resp.into_body().collect().await?.to_bytes();
                anyhow::ensure!(body.len() == 1024, "short body");
            }
            println!("{:.0}", n as f64 / start.elapsed().as_secs_f64());
            Ok(())
        }
        _ => anyhow::bail!("usage: bench_client origin CA_PEM_OUT | run PROXY URL N CA_PEM [fresh]"),
    }
}
