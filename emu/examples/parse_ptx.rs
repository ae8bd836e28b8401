//! Parses PTX files and prints what each holds (a debugging aid): `cargo run -p cuda-emu --example parse_ptx -- FILE…`.
fn main() {
    let mut failed = false;
    for path in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&path).expect("readable file");
        let t = std::time::Instant::now();
        match cuda_emu::ptx::parse_module(&text) {
            Ok(m) => {
                let instrs: usize = m.kernels.iter().map(|k| k.code.len()).sum();
                println!(
                    "{path}: {} kernels, {instrs} instructions, {:.1} ms",
                    m.kernels.len(),
                    t.elapsed().as_secs_f64() * 1e3
                );
                for k in &m.kernels {
                    println!(
                        "  {} params {} regs {} smem {} dyn-align {} local {}",
                        k.name,
                        k.params.len(),
                        k.reg_bits.len(),
                        k.static_shared,
                        k.dynamic_shared_align,
                        k.local_bytes
                    );
                }
            }
            Err(e) => {
                println!("{path}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
