use stacklstm::kernels::gates::{forward_step, StepForward};
use stacklstm::Activation;
use std::time::Instant;
fn main() {
    for &(b, u) in &[(1usize, 50usize), (1, 48), (16, 50), (16, 48), (32, 64)] {
        let mut z: Vec<f32> = (0..b * 4 * u).map(|i| (i as f32 * 0.37).sin()).collect();
        let z0 = z.clone();
        let bias: Vec<f32> = (0..4 * u).map(|i| (i as f32 * 0.01).sin()).collect();
        let cp: Vec<f32> = (0..b * u).map(|i| (i as f32 * 0.11).cos()).collect();
        let (mut c, mut pc, mut h) = (vec![0f32; b * u], vec![0f32; b * u], vec![0f32; b * u]);
        let reps = 100_000;
        let mut best = f64::MAX;
        for _ in 0..7 {
            let t = Instant::now();
            for _ in 0..reps {
                z.copy_from_slice(&z0);
                forward_step(
                    StepForward {
                        gates: &mut z,
                        bias: &bias,
                        c_prev: &cp,
                        c: &mut c,
                        phi_c: &mut pc,
                        h: &mut h,
                    },
                    u,
                    Activation::Sigmoid,
                    Activation::Tanh,
                );
            }
            best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        println!(
            "b{b} u{u}: {:.3} us, {:.2} ns/unit",
            best * 1e6,
            best * 1e9 / (b * u) as f64
        );
    }
}
