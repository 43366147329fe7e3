//! temp
use std::time::Instant;
use switchyard_cpu_pool::{CpuPool, CpuPoolConfig};
fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pool = CpuPool::new(&CpuPoolConfig { threads: 1, queue_capacity: 4 }).unwrap();
    rt.block_on(async {
        for _ in 0..10_000 { pool.submit(|| ()).await.unwrap(); }
        let n = 200_000;
        let t = Instant::now();
        for _ in 0..n { pool.submit(|| ()).await.unwrap(); }
        println!("round trip: {:?}", t.elapsed() / n);
    });
}
