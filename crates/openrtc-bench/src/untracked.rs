//! `openrtc-bench-untracked`: the same benchmarks on the system allocator, without the
//! tracking allocator (the other side of `overhead`'s allocator comparison).

fn main() -> anyhow::Result<()> {
    openrtc_bench::main_from_args()
}
