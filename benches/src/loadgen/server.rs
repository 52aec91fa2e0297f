//! The echo server: answers each `POST` with its body, one thread per
//! connection, connections kept open.

use std::net::{SocketAddr, TcpListener, TcpStream};

use anyhow::{Context, Result};

use super::http::{Conn, response};

/// Serves on `addr` until killed; prints `ready` once listening.
pub fn serve(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    println!("ready {}", listener.local_addr()?);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            let _ = serve_conn(stream);
        });
    }
    Ok(())
}

fn serve_conn(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut conn = Conn::new(stream);
    while let Some(m) = conn.read_message()? {
        let out = response(conn.message(m).body);
        conn.consume(m.2);
        std::io::Write::write_all(&mut conn.stream, &out)?;
    }
    Ok(())
}
