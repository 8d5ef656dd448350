//! A TCP proxy the tests control, between a client and one etcd member,
//! to cut the network Jepsen-style: `freeze` stops delivering bytes both
//! ways but keeps the connections open (a partition the client cannot see:
//! its requests go unanswered), `drop` closes every connection and every
//! new one at once (a partition that resets), `heal` passes again.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Pass,
    Freeze,
    Drop,
}

struct State {
    mode: Mode,
    /// Every connection's two sockets, to close them on `drop`.
    conns: Vec<TcpStream>,
    stopped: bool,
}

pub struct Proxy {
    pub port: u16,
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl Proxy {
    /// A proxy on a free 127.0.0.1 port to `127.0.0.1:target`.
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new((
            Mutex::new(State {
                mode: Mode::Pass,
                conns: Vec::new(),
                stopped: false,
            }),
            Condvar::new(),
        ));
        let sh = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (lock, _) = &*sh;
                let st = lock.lock().unwrap();
                if st.stopped {
                    return;
                }
                if st.mode == Mode::Drop {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                drop(st);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let mut st = lock.lock().unwrap();
                st.conns.push(client.try_clone().unwrap());
                st.conns.push(server.try_clone().unwrap());
                drop(st);
                pump(
                    sh.clone(),
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                );
                pump(sh.clone(), server, client);
            }
        });
        Proxy { port, shared }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, mode: Mode) {
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().unwrap();
        st.mode = mode;
        if mode == Mode::Drop {
            for c in st.conns.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
        cv.notify_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().unwrap();
        st.stopped = true;
        st.mode = Mode::Drop;
        for c in st.conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        cv.notify_all();
        drop(st);
        // Wake the accept loop so that it sees `stopped`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copy `from` to `to`; a chunk read while frozen is held until the
/// proxy passes again (or is dropped).
fn pump(shared: Arc<(Mutex<State>, Condvar)>, mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (lock, cv) = &*shared;
            let mut st = lock.lock().unwrap();
            while st.mode == Mode::Freeze {
                st = cv.wait(st).unwrap();
            }
            if st.mode == Mode::Drop {
                break;
            }
            drop(st);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
