//! The loss and divergence arithmetic on raw logits, separate from the model so that it can be
//! checked on hand-made logits.
//!
//! Statistics are the ones llama.cpp's `llama-perplexity` reports:
//! - PPL = exp(mean NLL); its standard error is the delta-method one, `ppl * se(mean NLL)`.
//! - the standard error of a mean is `sqrt(sum((x - mean)^2) / (N - 1) / N)` (the sample standard
//!   deviation over sqrt(N)), which equals llama.cpp's `sqrt((E[x^2] - E[x]^2) / (N - 1))`;
//!   it is 0 when N < 2.
//! - KLD per position is KL(P_base || P_model) over the full vocabulary softmax, computed from
//!   f64 log-softmaxes of the f32 logits (llama.cpp stores the base logits quantized to 16 bits,
//!   so its figures differ from these in the last digits).
//! - the 99th percentile is the nearest-rank one: sort the per-position KLDs ascending and take
//!   the value at 1-based rank ceil(0.99 * N).
//! - top-1 agreement is the fraction of positions whose argmax (first index on ties) is the same
//!   for both models, with binomial standard error `sqrt(p (1 - p) / (N - 1))`.

use serde::Serialize;

use super::EvalError;

/// What one scored position contributes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PositionScore {
    /// -ln P_model(target).
    pub nll: f64,
    /// With a baseline: -ln P_base(target), KL(P_base || P_model) and whether the argmaxes agree.
    pub base: Option<(f64, f64, bool)>,
}

/// f64 log-softmax of a logits row; also returns the argmax (first index on ties).
fn log_softmax(row: &[f32]) -> (Vec<f64>, usize) {
    let mut arg = 0;
    let mut max = f64::NEG_INFINITY;
    for (i, &x) in row.iter().enumerate() {
        if f64::from(x) > max {
            max = f64::from(x);
            arg = i;
        }
    }
    let sum: f64 = row.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    let lse = max + sum.ln();
    (row.iter().map(|&x| f64::from(x) - lse).collect(), arg)
}

/// Scores one position: `model_row` (and `base_row`) are the logits predicting `target`.
/// Errors if the rows differ in length, are empty, or `target` is outside them.
pub fn score_position(
    model_row: &[f32],
    base_row: Option<&[f32]>,
    target: u32,
) -> Result<PositionScore, EvalError> {
    let v = model_row.len();
    let t = target as usize;
    if v == 0 || t >= v {
        return Err(EvalError::Scoring(format!(
            "target {target} outside a logits row of {v}"
        )));
    }
    let (lm, am) = log_softmax(model_row);
    let nll = -lm[t];
    let base = match base_row {
        None => None,
        Some(b) => {
            if b.len() != v {
                return Err(EvalError::Scoring(format!(
                    "baseline row has {} logits, model row {v}",
                    b.len()
                )));
            }
            let (lb, ab) = log_softmax(b);
            let kld: f64 = lb
                .iter()
                .zip(&lm)
                .map(|(&pb, &pm)| {
                    if pb == f64::NEG_INFINITY {
                        0.0
                    } else {
                        pb.exp() * (pb - pm)
                    }
                })
                .sum();
            Some((-lb[t], kld, am == ab))
        }
    };
    Ok(PositionScore { nll, base })
}

/// The per-position values of a run, kept in order so the summary is deterministic.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    nll: Vec<f64>,
    base_nll: Vec<f64>,
    kld: Vec<f64>,
    same_top1: usize,
}

/// Mean and standard error of the mean (0 if fewer than 2 values).
fn mean_se(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    if x.is_empty() {
        return (f64::NAN, 0.0);
    }
    let mean = x.iter().sum::<f64>() / n;
    if x.len() < 2 {
        return (mean, 0.0);
    }
    let ss: f64 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
    (mean, (ss / (n - 1.0) / n).sqrt())
}

/// The statistics of a run; see the module doc for the exact definitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreSummary {
    /// Scored positions.
    pub n_tokens_scored: usize,
    /// Mean negative log-likelihood (nats).
    pub nll_mean: f64,
    /// exp(nll_mean).
    pub ppl: f64,
    /// ppl * se(nll_mean).
    pub ppl_stderr: f64,
    /// Baseline perplexity on the same positions.
    pub base_ppl: Option<f64>,
    /// Its standard error.
    pub base_ppl_stderr: Option<f64>,
    /// 100 * (ppl / base_ppl - 1).
    pub delta_ppl_pct: Option<f64>,
    /// Standard error of delta_ppl_pct: 100 * (ppl / base_ppl) * se(mean(nll - base_nll)).
    pub delta_ppl_pct_stderr: Option<f64>,
    /// Mean KL(P_base || P_model) (nats).
    pub kld_mean: Option<f64>,
    /// Its standard error.
    pub kld_stderr: Option<f64>,
    /// Nearest-rank 99th percentile of the per-position KLD.
    pub kld_p99: Option<f64>,
    /// Largest per-position KLD.
    pub kld_max: Option<f64>,
    /// Fraction (0..=1) of positions where both models' argmax agree.
    pub top1_agree: Option<f64>,
    /// Its binomial standard error (fraction).
    pub top1_stderr: Option<f64>,
}

impl Scores {
    /// Appends one position's contribution (in scoring order).
    pub fn push(&mut self, s: PositionScore) {
        self.nll.push(s.nll);
        if let Some((bn, kld, same)) = s.base {
            self.base_nll.push(bn);
            self.kld.push(kld);
            self.same_top1 += usize::from(same);
        }
    }

    /// Number of positions pushed.
    pub fn len(&self) -> usize {
        self.nll.len()
    }

    /// Whether nothing was scored yet.
    pub fn is_empty(&self) -> bool {
        self.nll.is_empty()
    }

    /// Computes the summary statistics. Baseline fields are `Some` only if every position had a baseline.
    pub fn summary(&self) -> ScoreSummary {
        let n = self.nll.len();
        let (nll_mean, nll_se) = mean_se(&self.nll);
        let ppl = nll_mean.exp();
        let mut s = ScoreSummary {
            n_tokens_scored: n,
            nll_mean,
            ppl,
            ppl_stderr: ppl * nll_se,
            base_ppl: None,
            base_ppl_stderr: None,
            delta_ppl_pct: None,
            delta_ppl_pct_stderr: None,
            kld_mean: None,
            kld_stderr: None,
            kld_p99: None,
            kld_max: None,
            top1_agree: None,
            top1_stderr: None,
        };
        if n == 0 || self.base_nll.len() != n {
            return s;
        }
        let (bm, bse) = mean_se(&self.base_nll);
        let base_ppl = bm.exp();
        let diff: Vec<f64> = self
            .nll
            .iter()
            .zip(&self.base_nll)
            .map(|(a, b)| a - b)
            .collect();
        let (_, dse) = mean_se(&diff);
        let ratio = ppl / base_ppl;
        let (km, kse) = mean_se(&self.kld);
        let mut sorted = self.kld.clone();
        sorted.sort_by(f64::total_cmp);
        // Nearest rank ceil(0.99 N) in exact integer arithmetic; n >= 1 so rank >= 1.
        let rank = (99 * n).div_ceil(100);
        let p = self.same_top1 as f64 / n as f64;
        s.base_ppl = Some(base_ppl);
        s.base_ppl_stderr = Some(base_ppl * bse);
        s.delta_ppl_pct = Some(100.0 * (ratio - 1.0));
        s.delta_ppl_pct_stderr = Some(100.0 * ratio * dse);
        s.kld_mean = Some(km);
        s.kld_stderr = Some(kse);
        s.kld_p99 = Some(sorted[rank - 1]);
        s.kld_max = sorted.last().copied();
        s.top1_agree = Some(p);
        s.top1_stderr = Some(if n > 1 {
            (p * (1.0 - p) / (n as f64 - 1.0)).sqrt()
        } else {
            0.0
        });
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(p: [f64; 4], shift: f64) -> Vec<f32> {
        p.iter().map(|x| (x.ln() + shift) as f32).collect()
    }

    fn close(a: f64, b: f64, what: &str) {
        assert!((a - b).abs() < 2e-6, "{what}: {a} vs {b}");
    }

    /// Hand-computed case, vocabulary of 4, logits = ln(prob) (+ a shift on some rows, which a
    /// softmax ignores). L = ln 2.
    ///
    /// | pos | base P              | model P             | target | model NLL | base NLL | KLD   | top-1 same |
    /// | A   | .5 .25 .125 .125    | .125 .125 .25 .5    | 0      | 3L        | L        | 7/8 L | no (0 vs 3)|
    /// | B   | .125 .5 .25 .125    | same                | 1      | L         | L        | 0     | yes        |
    /// | C   | .5 .25 .125 .125    | .5 .125 .25 .125    | 2      | 2L        | 3L       | 1/8 L | yes        |
    ///
    /// KLD A = .5 ln4 + .25 ln2 + .125 ln(1/2) + .125 ln(1/4) = (1 + .25 - .125 - .25) L = 7/8 L;
    /// KLD C = .25 ln(.25/.125) + .125 ln(.125/.25) = 1/8 L.
    /// NLL: mean 2L, PPL = 4, deviations (1, -1, 0) L: se = sqrt(2/2/3) L = L/sqrt3, ppl_se = 4L/sqrt3.
    /// Base NLL mean 5/3 L, base PPL = 2^(5/3); delta = 100 (2^(1/3) - 1) = 25.9921...%.
    /// Diff (2, 0, -1) L: mean 1/3, devs (5/3, -1/3, -4/3), ss = 42/9, se = sqrt(42/9/2/3) L = sqrt(7)/3 L;
    /// delta_se = 100 * 2^(1/3) * sqrt(7)/3 * L.
    /// KLD mean = (7/8 + 0 + 1/8)/3 L = L/3; devs (13/24, -8/24, -5/24) L, ss = 258/576 L^2,
    /// se = sqrt(258/576/2/3) L = sqrt(43)/24 L. p99: rank ceil(2.97) = 3 -> max = 7/8 L.
    /// Top-1: p = 2/3, se = sqrt(2/9 / 2) = 1/3.
    #[test]
    fn hand_computed_statistics() {
        let l = 2f64.ln();
        let mut s = Scores::default();
        let positions = [
            (
                row([0.5, 0.25, 0.125, 0.125], 0.0),
                row([0.125, 0.125, 0.25, 0.5], 3.0),
                0u32,
            ),
            (
                row([0.125, 0.5, 0.25, 0.125], -1.0),
                row([0.125, 0.5, 0.25, 0.125], 2.0),
                1,
            ),
            (
                row([0.5, 0.25, 0.125, 0.125], 1.0),
                row([0.5, 0.125, 0.25, 0.125], 0.0),
                2,
            ),
        ];
        let expect = [
            (3.0 * l, l, 0.875 * l, false),
            (l, l, 0.0, true),
            (2.0 * l, 3.0 * l, 0.125 * l, true),
        ];
        for ((b, m, t), (enll, ebnll, ekld, esame)) in positions.iter().zip(expect) {
            let p = score_position(m, Some(b), *t).unwrap();
            let (bn, kld, same) = p.base.unwrap();
            close(p.nll, enll, "nll");
            close(bn, ebnll, "base nll");
            close(kld, ekld, "kld");
            assert_eq!(same, esame);
            s.push(p);
        }
        let r = s.summary();
        assert_eq!(r.n_tokens_scored, 3);
        close(r.nll_mean, 2.0 * l, "nll mean");
        close(r.ppl, 4.0, "ppl");
        close(r.ppl_stderr, 4.0 * l / 3f64.sqrt(), "ppl se");
        close(r.base_ppl.unwrap(), 2f64.powf(5.0 / 3.0), "base ppl");
        close(
            r.delta_ppl_pct.unwrap(),
            100.0 * (2f64.powf(1.0 / 3.0) - 1.0),
            "delta",
        );
        close(
            r.delta_ppl_pct_stderr.unwrap(),
            100.0 * 2f64.powf(1.0 / 3.0) * 7f64.sqrt() / 3.0 * l,
            "delta se",
        );
        close(r.kld_mean.unwrap(), l / 3.0, "kld mean");
        close(r.kld_stderr.unwrap(), 43f64.sqrt() / 24.0 * l, "kld se");
        close(r.kld_p99.unwrap(), 0.875 * l, "p99");
        close(r.top1_agree.unwrap(), 2.0 / 3.0, "top1");
        close(r.top1_stderr.unwrap(), 1.0 / 3.0, "top1 se");
    }

    #[test]
    fn p99_is_nearest_rank() {
        // 200 values 1..=200: rank ceil(198) = 198 -> 198. 101 values: ceil(99.99) = 100 -> 100.
        for (n, want) in [(200usize, 198.0), (101, 100.0), (1, 1.0)] {
            let mut s = Scores::default();
            for i in (1..=n).rev() {
                s.push(PositionScore {
                    nll: 1.0,
                    base: Some((1.0, i as f64, true)),
                });
            }
            assert_eq!(s.summary().kld_p99, Some(want), "n = {n}");
        }
    }

    #[test]
    fn bad_scoring_inputs_are_errors() {
        assert!(score_position(&[0.0; 4], None, 4).is_err());
        assert!(score_position(&[], None, 0).is_err());
        assert!(score_position(&[0.0; 4], Some(&[0.0; 3]), 0).is_err());
    }
}
