//! Batches for stateful truncated backpropagation through time (TBPTT) over one long token
//! stream: the batching behind [`Trainer::fit_stream`](crate::Trainer::fit_stream).

use ndarray::Array2;

use crate::error::{Error, Result};

/// Batches for stateful truncated BPTT.
///
/// The id stream is cut into `batch_size` contiguous lanes of `L = ids.len() / batch_size` ids
/// (lane `b` is `ids[b*L .. (b+1)*L]`; the last `ids.len() % batch_size` ids are dropped). Batch
/// `k` holds, for every lane `b` and `t < seq_len`,
///
/// ```text
/// inputs [b, t] = lane_b[k * seq_len + t]
/// targets[b, t] = lane_b[k * seq_len + t + 1]
/// ```
///
/// so row `b` of batch `k + 1` continues row `b` of batch `k` exactly, and a hidden state carried
/// from one batch to the next belongs to the same lane. There are `(L - 1) / seq_len` batches,
/// all full; the last `(L - 1) % seq_len` positions of each lane are not used as inputs.
#[derive(Debug, Clone)]
pub struct TbpttBatches<'a> {
    ids: &'a [u32],
    batch_size: usize,
    seq_len: usize,
    lane_len: usize,
    n_batches: usize,
    next: usize,
}

impl<'a> TbpttBatches<'a> {
    /// Checks the sizes: `batch_size` and `seq_len` at least 1, and each lane long enough for
    /// one batch (`ids.len() / batch_size >= seq_len + 1`).
    pub fn new(ids: &'a [u32], batch_size: usize, seq_len: usize) -> Result<Self> {
        if batch_size == 0 || seq_len == 0 {
            return Err(Error::config(format!(
                "batch_size ({batch_size}) and seq_len ({seq_len}) must be at least 1"
            )));
        }
        let lane_len = ids.len() / batch_size;
        let need = seq_len
            .checked_add(1)
            .ok_or_else(|| Error::config("seq_len is too large"))?;
        if lane_len < need {
            return Err(Error::input(format!(
                "a stream of {} ids split into {batch_size} lanes gives lanes of {lane_len} ids, fewer than seq_len + 1 = {need}",
                ids.len()
            )));
        }
        Ok(TbpttBatches {
            ids,
            batch_size,
            seq_len,
            lane_len,
            n_batches: (lane_len - 1) / seq_len,
            next: 0,
        })
    }

    /// The number of ids per lane, `L`.
    pub fn lane_len(&self) -> usize {
        self.lane_len
    }

    /// The total number of batches (independent of how many were already taken).
    pub fn num_batches(&self) -> usize {
        self.n_batches
    }

    /// Batch `k` (`k < num_batches()`), without moving the iterator.
    pub fn batch(&self, k: usize) -> Option<(Array2<u32>, Array2<u32>)> {
        if k >= self.n_batches {
            return None;
        }
        let mut x = Array2::<u32>::zeros((self.batch_size, self.seq_len));
        let mut y = Array2::<u32>::zeros((self.batch_size, self.seq_len));
        for b in 0..self.batch_size {
            let base = b * self.lane_len + k * self.seq_len;
            let xs = self.ids.get(base..base + self.seq_len)?;
            let ys = self.ids.get(base + 1..base + 1 + self.seq_len)?;
            for (t, (&xi, &yi)) in xs.iter().zip(ys).enumerate() {
                if let (Some(dx), Some(dy)) = (x.get_mut((b, t)), y.get_mut((b, t))) {
                    *dx = xi;
                    *dy = yi;
                }
            }
        }
        Some((x, y))
    }
}

impl Iterator for TbpttBatches<'_> {
    type Item = (Array2<u32>, Array2<u32>);

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.batch(self.next)?;
        self.next += 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.n_batches.saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for TbpttBatches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tbptt_lanes_continue_exactly() {
        let ids: Vec<u32> = (0..103).collect();
        let b = TbpttBatches::new(&ids, 4, 6).unwrap();
        // L = 25, batches = 24 / 6 = 4
        assert_eq!(b.lane_len(), 25);
        assert_eq!(b.num_batches(), 4);
        assert_eq!(b.len(), 4);
        let batches: Vec<_> = b.collect();
        assert_eq!(batches.len(), 4);
        for (k, (x, y)) in batches.iter().enumerate() {
            assert_eq!(x.shape(), &[4, 6]);
            for lane in 0..4 {
                for t in 0..6 {
                    let want = (lane * 25 + k * 6 + t) as u32;
                    assert_eq!(x[[lane, t]], want);
                    assert_eq!(y[[lane, t]], want + 1);
                }
                if let Some((nx, _)) = batches.get(k + 1) {
                    // the next batch's first input follows this batch's last input in the lane
                    assert_eq!(nx[[lane, 0]], x[[lane, 5]] + 1);
                    assert_eq!(nx[[lane, 0]], y[[lane, 5]]);
                }
            }
        }
        // every lane's targets stay inside the lane
        let (_, y_last) = &batches[3];
        for lane in 0..4 {
            assert!(y_last[[lane, 5]] < ((lane + 1) * 25) as u32);
        }
    }

    #[test]
    fn tbptt_errors() {
        let ids: Vec<u32> = (0..10).collect();
        assert!(TbpttBatches::new(&ids, 0, 2).is_err());
        assert!(TbpttBatches::new(&ids, 2, 0).is_err());
        let e = TbpttBatches::new(&ids, 2, 5).unwrap_err().to_string();
        assert!(e.contains("10 ids") && e.contains("2 lanes"), "{e}");
        assert!(TbpttBatches::new(&ids, 2, 4).is_ok());
        assert!(TbpttBatches::new(&ids, 1, usize::MAX).is_err());
        assert!(TbpttBatches::new(&[], 1, 1).is_err());
    }

    proptest! {
        #[test]
        fn tbptt_cover_each_lane(len in 0usize..300, bs in 1usize..8, sl in 1usize..20) {
            let ids: Vec<u32> = (0..len as u32).collect();
            match TbpttBatches::new(&ids, bs, sl) {
                Err(_) => prop_assert!(len / bs < sl + 1),
                Ok(b) => {
                    let l = len / bs;
                    let n = b.num_batches();
                    prop_assert_eq!(n, (l - 1) / sl);
                    let mut lanes = vec![Vec::new(); bs];
                    for (x, y) in b {
                        for lane in 0..bs {
                            for t in 0..sl {
                                prop_assert_eq!(y[[lane, t]], x[[lane, t]] + 1);
                                lanes[lane].push(x[[lane, t]]);
                            }
                        }
                    }
                    for (lane, got) in lanes.iter().enumerate() {
                        let want: Vec<u32> = ((lane * l) as u32..(lane * l + n * sl) as u32).collect();
                        prop_assert_eq!(got, &want);
                    }
                }
            }
        }
    }
}
