//! The `protogate` command: `serve`, `routes` and `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use protogate::config::{Config, Flags};
use protogate::registry::{snapshot, source};
use protogate::{example, pb, server};

#[derive(Parser)]
#[command(
    name = "protogate",
    version,
    about = "A gRPC/REST transcoding API gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve REST/JSON for the gRPC services in the descriptor sets.
    Serve {
        /// A binary FileDescriptorSet (protoc --include_imports --descriptor_set_out, or buf build -o).
        #[arg(long = "descriptor", value_name = "FILE")]
        descriptors: Vec<PathBuf>,
        /// The default backend (URL), or one service's backend (PKG.SERVICE=URL).
        #[arg(long = "upstream", value_name = "URL|SERVICE=URL")]
        upstreams: Vec<String>,
        /// Address of the public listener [default: 127.0.0.1:8080].
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        /// A TOML configuration file; flags override it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the route table of descriptor sets: method, template, gRPC method.
    Routes {
        #[arg(long = "descriptor", value_name = "FILE", required = true)]
        descriptors: Vec<PathBuf>,
    },
    /// Run the example library backend and the gateway in one process.
    Demo {
        /// Address of the gateway.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Address of the example gRPC backend.
        #[arg(long, default_value = "127.0.0.1:50051")]
        backend_listen: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Serve {
            descriptors,
            upstreams,
            listen,
            config,
        } => {
            serve(
                config,
                Flags {
                    listen,
                    descriptors,
                    upstreams,
                },
            )
            .await
        }
        Command::Routes { descriptors } => routes(&descriptors),
        Command::Demo {
            listen,
            backend_listen,
        } => demo(listen, backend_listen).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("protogate: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config_file: Option<PathBuf>, flags: Flags) -> Result<(), String> {
    let config = Config::load(config_file.as_deref(), &flags)
        .map_err(|e| format!("invalid configuration:\n{e}"))?;
    let server = server::start(&config).await.map_err(|e| e.to_string())?;
    run_until_signal(server).await
}

fn routes(descriptors: &[PathBuf]) -> Result<(), String> {
    let sets = source::read_files(descriptors).map_err(|e| e.join("\n"))?;
    let pool = source::merge(&sets).map_err(|e| e.join("\n"))?;
    let (_, table) = snapshot::routes(&pool).map_err(|e| e.join("\n"))?;
    let width = table
        .bindings()
        .iter()
        .map(|b| b.template_text.len())
        .max()
        .unwrap_or(0);
    for binding in table.bindings() {
        let method = binding.http_method.as_str();
        println!(
            "{method:<7} {:<width$}  {}",
            binding.template_text, binding.rpc_name
        );
    }
    Ok(())
}

async fn demo(listen: SocketAddr, backend_listen: SocketAddr) -> Result<(), String> {
    let backend = tokio::net::TcpListener::bind(backend_listen)
        .await
        .map_err(|e| format!("cannot bind the example backend to {backend_listen}: {e}"))?;
    let backend_addr = backend.local_addr().map_err(|e| e.to_string())?;
    let _backend = example::serve_library(backend);
    let flags = Flags {
        listen: Some(listen.to_string()),
        descriptors: Vec::new(),
        upstreams: vec![format!("http://{backend_addr}")],
    };
    let config = Config::load(None, &flags).map_err(|e| e.to_string())?;
    let sets = [(
        "embedded library.binpb".to_string(),
        pb::LIBRARY_DESCRIPTOR_SET.to_vec(),
    )];
    let server = server::start_with_sets(&config, &sets)
        .await
        .map_err(|e| e.to_string())?;
    print_demo_lines(server.local_addr, backend_addr);
    run_until_signal(server).await
}

fn print_demo_lines(gateway: SocketAddr, backend: SocketAddr) {
    let base = format!("http://{gateway}");
    println!("protogate demo: gateway on {base}, example gRPC backend on {backend}\nTry:");
    let lines = [
        format!("curl {base}/v1/shelves"),
        format!("curl {base}/v1/shelves/1/books/1"),
        format!(
            "curl '{base}/v1/shelves/1/books?author=Ursula%20K.%20Le%20Guin&genres=GENRE_FICTION'"
        ),
        format!(
            "curl -X POST {base}/v1/shelves/1/books -H 'Content-Type: application/json' -d '{{\"title\": \"Dune\", \"author\": \"Frank Herbert\", \"pageCount\": 412}}'"
        ),
        format!("curl -N {base}/v1/shelves/1/books:stream"),
        format!("curl -o cover.svg {base}/v1/shelves/1/books/1/cover"),
        format!("curl -i {base}/v1/shelves/9"),
    ];
    for line in lines {
        println!("  {line}");
    }
}

async fn run_until_signal(server: server::Server) -> Result<(), String> {
    let mut server = server;
    tokio::select! {
        result = server.wait() => result.map_err(|e| e.to_string()),
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            server.shutdown().await.map_err(|e| e.to_string())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
