//! A TCP proxy between the server and one of its backing services (PostgreSQL, Redis), for the
//! fault tests: [`FaultProxy::cut`] drops every connection through it and refuses new ones, as a
//! crashed or unreachable server does; [`FaultProxy::restore`] listens again on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    /// The accept loop and every proxied connection; aborting them drops their sockets.
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl FaultProxy {
    /// A proxy on a free port of 127.0.0.1 forwarding to `target`.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind the proxy");
        let proxy = FaultProxy {
            addr: listener.local_addr().expect("a bound address"),
            target,
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn serve(&self, listener: TcpListener) {
        let tasks = self.tasks.clone();
        let target = self.target;
        self.tasks.lock().unwrap().spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                tasks.lock().unwrap().spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
    }

    /// Closes every connection through the proxy and stops listening: the server sees its
    /// connections end and new ones refused.
    pub fn cut(&self) {
        self.tasks.lock().unwrap().abort_all();
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("cannot listen again on the proxy's port");
        self.serve(listener);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
