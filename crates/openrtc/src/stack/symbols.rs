//! Turning a captured stack into frames a person reads: function, file and line, with the
//! runtime's own frames cut off so the first frame of the agent's code stands out.
//!
//! Symbolization runs on the watchdog's reporter thread, after the stuck thread has been let
//! go. It reads the binary's debug info (the workspace's release and bench profiles keep
//! `debug = "limited"`: line tables and full names of inlined functions). The first
//! symbolization loads it (about 30 ms and 40 MiB of RSS for the demo's release build, half of
//! it the mapped file); the reporter unloads it after a quiet minute, so a worker without
//! stalls never pays for it.

use std::fmt;
use std::path::Path;

use super::capture::RawStack;

/// At most this many frames are kept per stall: the top user frame and what surrounds it.
pub(crate) const KEPT_FRAMES: usize = 16;

/// Whose code a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The agent's own code (any crate that is not a library or the runtime).
    User,
    /// The standard library, C code, or a dependency from a registry.
    Library,
    /// The runtime that polls sessions: this crate and Tokio.
    Runtime,
}

/// One symbolized frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The function, demangled without its hash (`std::thread::sleep`); the address in hex
    /// when it has no symbol.
    pub(crate) function: String,
    /// The source file, shortened (relative to the working directory, or from the library's
    /// own root).
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
    pub(crate) origin: Origin,
}

impl Frame {
    /// Where the frame is in the source, `file:line` or `file`, when the debug info says.
    pub(crate) fn location(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        Some(match self.line {
            Some(line) => format!("{file}:{line}"),
            None => file.clone(),
        })
    }
}

/// Formats as `function (file:line)`.
impl fmt::Display for Frame {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.function)?;
        match self.location() {
            Some(location) => write!(formatter, " ({location})"),
            None => Ok(()),
        }
    }
}

/// A stall's stack, trimmed: library frames above the agent's code, the agent's frames, and
/// nothing of the runtime below them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stack {
    pub(crate) frames: Vec<Frame>,
    /// The index in `frames` of the innermost frame of the agent's code, if any was found.
    pub(crate) top_user: Option<usize>,
}

impl Stack {
    /// The innermost frame of the agent's code.
    pub(crate) fn top_user_frame(&self) -> Option<&Frame> {
        self.frames.get(self.top_user?)
    }

    /// The function the agent's code was calling when it was caught (`std::thread::sleep`),
    /// or the agent's own function when it was caught running its own code.
    pub(crate) fn blocking_call(&self) -> Option<&str> {
        let top_user = self.top_user?;
        let frame = match top_user.checked_sub(1) {
            Some(callee) => &self.frames[callee],
            None => &self.frames[top_user],
        };
        Some(&frame.function)
    }
}

/// Resolves every address of a capture to its frames (inlined calls included), then trims.
pub(crate) fn symbolize(raw: &RawStack) -> Stack {
    trim(resolve(raw))
}

/// Resolves every address of a capture to its frames, inlined calls included, innermost first.
pub(crate) fn resolve(raw: &RawStack) -> Vec<Frame> {
    let working_directory = std::env::current_dir().ok();
    let mut frames = Vec::new();
    for (index, &address) in raw.addresses.iter().enumerate() {
        // A return address points after its call; look up the call itself.
        let lookup = if index == 0 {
            address
        } else {
            address.saturating_sub(1)
        };
        let before = frames.len();
        backtrace::resolve(lookup as *mut std::ffi::c_void, |symbol| {
            let function = symbol
                .name()
                .map_or_else(|| format!("{address:#x}"), |name| format!("{name:#}"));
            let file = symbol.filename();
            frames.push(Frame {
                origin: origin(&function, file),
                file: file.map(|file| shorten(file, working_directory.as_deref())),
                line: symbol.lineno(),
                function,
            });
        });
        if frames.len() == before {
            frames.push(Frame {
                function: format!("{address:#x}"),
                file: None,
                line: None,
                origin: Origin::Library,
            });
        }
        // An instruction the compiler made for no statement of its own has line 0 in the line
        // table (a loop's back edge, a spill): give such a frame the line of the nearest
        // instruction before it in the same function, the statement it belongs to.
        for frame in &mut frames[before..] {
            if frame.line.is_none() && frame.file.is_some() {
                frame.line = line_before(lookup, &frame.function);
            }
        }
    }
    frames
}

/// How far back [`line_before`] looks for an instruction with a line: a few instructions.
const LINE_SEARCH_BYTES: usize = 32;

/// The line of the nearest address before `address` (within [`LINE_SEARCH_BYTES`]) that the
/// debug info places in `function`, if any.
fn line_before(address: usize, function: &str) -> Option<u32> {
    (1..=LINE_SEARCH_BYTES).find_map(|back| {
        let mut found = None;
        backtrace::resolve(
            address.saturating_sub(back) as *mut std::ffi::c_void,
            |symbol| {
                let same = symbol
                    .name()
                    .is_some_and(|name| format!("{name:#}") == function);
                if found.is_none() && same {
                    found = symbol.lineno().filter(|&line| line != 0);
                }
            },
        );
        found
    })
}

/// Keeps the frames above the first runtime frame under the agent's code: the runtime's own
/// polling machinery says nothing about why the agent blocked. With no agent frame at all,
/// keeps the innermost frames as they are.
pub(crate) fn trim(mut frames: Vec<Frame>) -> Stack {
    let top_user = frames.iter().position(|frame| frame.origin == Origin::User);
    if let Some(top_user) = top_user {
        if let Some(runtime) = frames[top_user..]
            .iter()
            .position(|frame| frame.origin == Origin::Runtime)
        {
            frames.truncate(top_user + runtime);
        }
        // Keep the agent's frames in view if a deep library stack sits above them.
        let skip = top_user.saturating_sub(KEPT_FRAMES / 2);
        frames.drain(..skip);
        frames.truncate(KEPT_FRAMES);
        return Stack {
            frames,
            top_user: Some(top_user - skip),
        };
    }
    frames.truncate(KEPT_FRAMES);
    Stack {
        frames,
        top_user: None,
    }
}

/// Whose code a function is, from its source file and its crate.
///
/// The file decides first: the runtime's own sources (wherever this crate was built from) and
/// Tokio's are the runtime; the standard library's (`/rustc/…`), a registry's, and C sources
/// (relative paths in the system's debug info) are libraries. Then the crate named in the
/// function's path: generic impls (`<A as openrtc::agent::ErasedAgent>::start`) name no crate
/// of their own, which is why the file comes first.
pub(crate) fn origin(function: &str, file: Option<&Path>) -> Origin {
    let krate = crate_of(function);
    if matches!(krate, Some("openrtc" | "tokio")) {
        return Origin::Runtime;
    }
    if function.starts_with("__") {
        // Compiler-made shims (`__rust_realloc`, placed in the crate that declares the
        // global allocator) and C internals (`__libc_recv`).
        return Origin::Library;
    }
    let Some(file) = file else {
        return Origin::Library;
    };
    let file = file.to_string_lossy();
    if is_runtime_source(&file) {
        return Origin::Runtime;
    }
    let library_source = !file.starts_with('/')
        || file.contains("/rustc/")
        || file.contains("/.cargo/registry/")
        || file.contains("/.cargo/git/");
    if library_source || matches!(krate, Some("std" | "core" | "alloc")) {
        Origin::Library
    } else {
        Origin::User
    }
}

/// Whether `file` is a source of this crate or of Tokio.
fn is_runtime_source(file: &str) -> bool {
    // This file's path as the compiler saw it (`crates/openrtc/src/stack/symbols.rs` in the
    // workspace, `…/openrtc-0.1.0/src/stack/symbols.rs` from a registry) names the crate's
    // directory, whichever way it was built.
    let this_crate = file!()
        .strip_suffix("src/stack/symbols.rs")
        .unwrap_or(file!());
    let in_this_crate = file
        .find(this_crate)
        .is_some_and(|at| file[at + this_crate.len()..].starts_with("src/"));
    let in_tokio = file.split('/').any(|part| {
        part.strip_prefix("tokio-")
            .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
    });
    in_this_crate || in_tokio
}

/// The crate a demangled Rust path starts in: `openrtc_demo` for
/// `openrtc_demo::agents::run`, `openrtc` for `<openrtc::probe::Attributed<F> as
/// core::future::Future>::poll`; `None` for a name that is not a Rust path.
fn crate_of(function: &str) -> Option<&str> {
    let mut rest = function;
    loop {
        let trimmed = rest
            .trim_start_matches(['<', '&', '*', '(', ' '])
            .trim_start_matches("mut ")
            .trim_start_matches("const ")
            .trim_start_matches("dyn ");
        if trimmed.len() == rest.len() {
            break;
        }
        rest = trimmed;
    }
    let (krate, _) = rest.split_once("::")?;
    (!krate.is_empty()
        && krate
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '_'))
    .then_some(krate)
}

/// A source path made short: relative to the working directory when under it, from
/// `library/` for the standard library, from the crate's directory for registry crates.
fn shorten(file: &Path, working_directory: Option<&Path>) -> String {
    if let Some(relative) =
        working_directory.and_then(|directory| file.strip_prefix(directory).ok())
    {
        return relative.display().to_string();
    }
    let text = file.display().to_string();
    if let Some(index) = text.find("/library/").filter(|_| text.contains("/rustc/")) {
        return text[index + 1..].to_owned();
    }
    if let Some(index) = text.find("/.cargo/registry/src/") {
        // Skip the index directory (`index.crates.io-…/`) after `src/`.
        let after = &text[index + "/.cargo/registry/src/".len()..];
        if let Some((_, in_crate)) = after.split_once('/') {
            return in_crate.to_owned();
        }
    }
    text
}

/// Drops the loaded line tables (symbolization loads them again when next needed).
pub(crate) fn unload() {
    backtrace::clear_symbol_cache();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, origin: Origin) -> Frame {
        Frame {
            function: function.to_owned(),
            file: None,
            line: None,
            origin,
        }
    }

    #[test]
    fn crates_are_read_from_plain_paths_and_trait_impls() {
        assert_eq!(crate_of("openrtc_demo::agents::run"), Some("openrtc_demo"));
        assert_eq!(
            crate_of("<openrtc::probe::Attributed<F> as core::future::Future>::poll"),
            Some("openrtc")
        );
        assert_eq!(
            crate_of("<&mut std::io::Stdin as std::io::Read>::read"),
            Some("std")
        );
        assert_eq!(crate_of("clock_nanosleep"), None);
        assert_eq!(crate_of("0x7f00"), None);
    }

    #[test]
    fn origins_follow_file_then_crate() {
        let runtime_file = format!("/build/{}", file!());
        assert_eq!(
            origin(
                "<A as openrtc::agent::ErasedAgent>::start",
                Some(Path::new(&runtime_file))
            ),
            Origin::Runtime
        );
        assert_eq!(
            origin("{async_fn#0}", Some(Path::new("/build/app/src/agent.rs"))),
            Origin::User
        );
        assert_eq!(
            origin(
                "__GI___clock_nanosleep",
                Some(Path::new("./time/../sysdeps/unix/clock_nanosleep.c"))
            ),
            Origin::Library
        );
        assert_eq!(
            origin(
                "poll",
                Some(Path::new(
                    "/h/.cargo/registry/src/index/tokio-1.48.0/src/task.rs"
                ))
            ),
            Origin::Runtime
        );
    }

    #[test]
    fn origins_follow_crate_then_file() {
        let workspace = Some(Path::new("/src/app/src/main.rs"));
        let registry = Some(Path::new("/h/.cargo/registry/src/index/serde-1/src/de.rs"));
        assert_eq!(origin("app::handler", workspace), Origin::User);
        assert_eq!(origin("serde::de::parse", registry), Origin::Library);
        assert_eq!(origin("app::handler", None), Origin::Library);
        assert_eq!(origin("std::thread::sleep", workspace), Origin::Library);
        assert_eq!(origin("tokio::runtime::park", registry), Origin::Runtime);
        assert_eq!(
            origin(
                "<openrtc::probe::Attributed<F> as core::future::Future>::poll",
                workspace
            ),
            Origin::Runtime
        );
        assert_eq!(origin("__GI___clock_nanosleep", None), Origin::Library);
        assert_eq!(origin("__rust_realloc", workspace), Origin::Library);
    }

    #[test]
    fn trimming_cuts_the_runtime_under_the_agent_and_finds_the_call() {
        let stack = trim(vec![
            frame("clock_nanosleep", Origin::Library),
            frame("std::thread::sleep", Origin::Library),
            frame("app::blocker::run", Origin::User),
            frame("app::agent::{{closure}}", Origin::User),
            frame("openrtc::probe::poll", Origin::Runtime),
            frame("tokio::runtime::run", Origin::Runtime),
        ]);
        assert_eq!(stack.frames.len(), 4);
        assert_eq!(stack.top_user, Some(2));
        assert_eq!(
            stack.top_user_frame().map(|frame| frame.function.as_str()),
            Some("app::blocker::run")
        );
        assert_eq!(stack.blocking_call(), Some("std::thread::sleep"));

        let spinning = trim(vec![
            frame("app::spin", Origin::User),
            frame("openrtc::probe::poll", Origin::Runtime),
        ]);
        assert_eq!(spinning.blocking_call(), Some("app::spin"));

        let no_agent = trim(vec![frame("tokio::x", Origin::Runtime); 40]);
        assert_eq!(no_agent.top_user, None);
        assert_eq!(no_agent.frames.len(), KEPT_FRAMES);
    }

    #[test]
    fn deep_library_stacks_keep_the_agent_in_view() {
        let mut frames = vec![frame("lib::deep", Origin::Library); 30];
        frames.push(frame("app::call", Origin::User));
        let stack = trim(frames);
        assert_eq!(stack.frames.len(), KEPT_FRAMES / 2 + 1);
        assert_eq!(stack.top_user, Some(KEPT_FRAMES / 2));
    }

    #[test]
    fn paths_are_shortened() {
        let cwd = Path::new("/w/repo");
        assert_eq!(
            shorten(Path::new("/w/repo/examples/demo/src/a.rs"), Some(cwd)),
            "examples/demo/src/a.rs"
        );
        assert_eq!(
            shorten(
                Path::new("/rustc/abc123/library/std/src/thread/mod.rs"),
                Some(cwd)
            ),
            "library/std/src/thread/mod.rs"
        );
        assert_eq!(
            shorten(
                Path::new("/h/.cargo/registry/src/index.crates.io-1/tokio-1.4/src/lib.rs"),
                None
            ),
            "tokio-1.4/src/lib.rs"
        );
        assert_eq!(
            shorten(Path::new("/elsewhere/x.rs"), Some(cwd)),
            "/elsewhere/x.rs"
        );
    }
}
