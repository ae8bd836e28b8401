//! `CUDA_EMU_PROFILE=FILE`: one JSON line per launch with instruction counts, global-memory
//! requests and the 32-byte sectors they touch, shared-memory wavefronts (bank conflicts) and
//! `mma` count. Counts, never times.

use std::io::Write;

use super::LaunchParams;
use crate::ir::Kernel;
use crate::Options;

#[derive(Default)]
pub struct Profile {
    pub thread_instructions: u64,
    pub warp_instructions: u64,
    pub global_load_requests: u64,
    pub global_store_requests: u64,
    pub global_bytes: u64,
    pub global_sectors: u64,
    pub shared_requests: u64,
    pub shared_wavefronts: u64,
    pub mma: u64,
    /// Scratch for one request's sectors / bank words.
    scratch: Vec<u64>,
}

impl Profile {
    #[inline]
    pub fn count(&mut self, mask: u32) {
        self.warp_instructions += 1;
        self.thread_instructions += mask.count_ones() as u64;
    }

    /// One warp-wide global request: each lane's (address, bytes).
    pub fn global(&mut self, store: bool, accesses: &[(u64, u32)]) {
        if accesses.is_empty() {
            return;
        }
        if store {
            self.global_store_requests += 1;
        } else {
            self.global_load_requests += 1;
        }
        self.scratch.clear();
        for &(a, n) in accesses {
            self.global_bytes += n as u64;
            let mut s = a / 32;
            while s * 32 < a + n as u64 {
                self.scratch.push(s);
                s += 1;
            }
        }
        self.scratch.sort_unstable();
        self.scratch.dedup();
        self.global_sectors += self.scratch.len() as u64;
    }

    /// One warp-wide shared request: wavefronts = the most distinct 4-byte words any of the 32
    /// banks must serve, at least one per 128 bytes moved.
    pub fn shared(&mut self, accesses: &[(u64, u32)]) {
        if accesses.is_empty() {
            return;
        }
        self.shared_requests += 1;
        self.scratch.clear();
        for &(a, n) in accesses {
            let mut w = a / 4;
            while w * 4 < a + n as u64 {
                self.scratch.push(w);
                w += 1;
            }
        }
        self.scratch.sort_unstable();
        self.scratch.dedup();
        let mut per_bank = [0u32; 32];
        for &w in &self.scratch {
            per_bank[(w % 32) as usize] += 1;
        }
        let worst = *per_bank.iter().max().unwrap_or(&1) as u64;
        let by_bytes = (self.scratch.len() as u64 * 4).div_ceil(128);
        self.shared_wavefronts += worst.max(by_bytes).max(1);
    }

    pub fn finish(&self, kernel: &Kernel, p: &LaunchParams, opts: &Options) {
        let Some(path) = &opts.profile else { return };
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let requests = self.global_load_requests + self.global_store_requests;
        let line =
            format!(
            "{{\"kernel\":\"{}\",\"grid\":[{},{},{}],\"block\":[{},{},{}],\"dynamic_shared\":{},\
             \"thread_instructions\":{},\"warp_instructions\":{},\"global_load_requests\":{},\
             \"global_store_requests\":{},\"global_bytes\":{},\"global_sectors\":{},\
             \"sectors_per_request\":{:.3},\"shared_requests\":{},\"shared_wavefronts\":{},\
             \"wavefronts_per_request\":{:.3},\"mma\":{},\"emulated\":\"not a timing\"}}\n",
            kernel.name,
            p.grid[0], p.grid[1], p.grid[2], p.block[0], p.block[1], p.block[2], p.dynamic_shared,
            self.thread_instructions,
            self.warp_instructions,
            self.global_load_requests,
            self.global_store_requests,
            self.global_bytes,
            self.global_sectors,
            ratio(self.global_sectors, requests),
            self.shared_requests,
            self.shared_wavefronts,
            ratio(self.shared_wavefronts, self.shared_requests),
            self.mma,
        );
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(mut f) => {
                let _ = f.write_all(line.as_bytes());
            }
            Err(e) => crate::report(&format!(
                "profile: cannot append to {}: {e}",
                path.display()
            )),
        }
    }
}
