//! A stand-in for a worker's socket, for protocol tests of the CLI only: it answers each
//! request line with a fixed line. The real worker's socket is tested in the runtime crate.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;

/// A listening stand-in; join it to get the request lines it received.
pub(crate) struct StandInWorker {
    handle: JoinHandle<Vec<String>>,
}

impl StandInWorker {
    /// Listens at `path` and serves `connections` connections one after another: reads one
    /// request line, waits for `release` when given, writes `answer` and a newline, then
    /// waits for the client to close.
    pub(crate) fn spawn(
        path: &Path,
        answer: String,
        connections: usize,
        release: Option<Receiver<()>>,
    ) -> Self {
        let listener = UnixListener::bind(path).expect("bind the stand-in socket");
        let handle = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for _ in 0..connections {
                let (stream, _) = listener.accept().expect("accept a client");
                let mut reader = BufReader::new(stream);
                let mut request = String::new();
                reader.read_line(&mut request).expect("read the request");
                requests.push(request);
                if let Some(release) = &release {
                    release.recv().expect("the test releases the answer");
                }
                let mut stream = reader.into_inner();
                stream
                    .write_all(format!("{answer}\n").as_bytes())
                    .expect("write the answer");
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
            }
            requests
        });
        Self { handle }
    }

    /// Waits for the stand-in to serve all its connections; returns the request lines.
    pub(crate) fn join(self) -> Vec<String> {
        self.handle.join().expect("the stand-in worker thread")
    }
}
