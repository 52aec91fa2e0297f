//! Minimal HTTP/1.1 framing: a request line or status line, headers, and a body
//! of exactly `Content-Length` bytes. No chunking, no pipelining beyond what the
//! buffer naturally handles; connections stay open (keep-alive).

use std::io::{self, Read, Write};

/// Largest header block accepted.
const MAX_HEAD: usize = 8 * 1024;

/// The fixed request of the load generator: `POST /echo` with `body` bytes.
pub fn request(body: usize) -> Vec<u8> {
    let mut out = format!(
        "POST /echo HTTP/1.1\r\nHost: echo\r\nUser-Agent: loadgen\r\nContent-Type: \
         application/octet-stream\r\nContent-Length: {body}\r\n\r\n"
    )
    .into_bytes();
    out.resize(out.len() + body, b'x');
    out
}

/// The echo server's answer: `200 OK` with `body` as the content.
pub fn response(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A stream with a read buffer that frames whole messages.
pub struct Conn<S> {
    pub stream: S,
    buf: Vec<u8>,
    filled: usize,
}

/// One message in the buffer: its first line, and where the body is.
pub struct Message<'a> {
    pub first_line: &'a str,
    pub body: &'a [u8],
}

impl<S: Read + Write> Conn<S> {
    pub fn new(stream: S) -> Self {
        Conn {
            stream,
            buf: vec![0; 16 * 1024],
            filled: 0,
        }
    }

    /// Reads the next whole message; `None` when the peer closed the connection
    /// cleanly between messages. Call [`Conn::consume`] with the returned length
    /// once done with it.
    pub fn read_message(&mut self) -> io::Result<Option<(usize, usize, usize)>> {
        let head_end = loop {
            if let Some(i) = find_head_end(&self.buf[..self.filled]) {
                break i;
            }
            if self.filled >= MAX_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "header too long",
                ));
            }
            if !self.fill()? {
                if self.filled == 0 {
                    return Ok(None);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        let (length, line_end) = {
            let head = std::str::from_utf8(&self.buf[..head_end])
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "header is not UTF-8"))?;
            (
                content_length(head)?,
                head.find("\r\n").unwrap_or(head.len()),
            )
        };
        let total = head_end + length;
        if self.buf.len() < total {
            self.buf.resize(total, 0);
        }
        while self.filled < total {
            if !self.fill()? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(Some((line_end, head_end, total)))
    }

    /// The message [`Conn::read_message`] framed.
    pub fn message(&self, (line_end, head_end, total): (usize, usize, usize)) -> Message<'_> {
        Message {
            first_line: std::str::from_utf8(&self.buf[..line_end]).unwrap_or(""),
            body: &self.buf[head_end..total],
        }
    }

    /// Drops a message from the front of the buffer.
    pub fn consume(&mut self, total: usize) {
        self.buf.copy_within(total..self.filled, 0);
        self.filled -= total;
    }

    /// Reads more bytes; false at end of stream.
    fn fill(&mut self) -> io::Result<bool> {
        if self.filled == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.stream.read(&mut self.buf[self.filled..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.filled += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// End of the header block (index just past `\r\n\r\n`).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The `Content-Length` of a header block (zero without one).
fn content_length(head: &str) -> io::Result<usize> {
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            return value
                .trim()
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length"));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its data in small pieces, as a socket may.
    struct Trickle(Vec<u8>, usize);

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(7).min(self.0.len() - self.1);
            out[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frames_back_to_back_messages() {
        let mut data = request(100);
        data.extend(response(b"hello"));
        let mut conn = Conn::new(Trickle(data, 0));
        let m = conn.read_message().unwrap().unwrap();
        let msg = conn.message(m);
        assert_eq!(msg.first_line, "POST /echo HTTP/1.1");
        assert_eq!(msg.body.len(), 100);
        conn.consume(m.2);
        let m = conn.read_message().unwrap().unwrap();
        let msg = conn.message(m);
        assert_eq!(msg.first_line, "HTTP/1.1 200 OK");
        assert_eq!(msg.body, b"hello");
        conn.consume(m.2);
        assert!(conn.read_message().unwrap().is_none());
    }
}
