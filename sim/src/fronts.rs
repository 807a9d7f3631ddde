//! Each policy family's Pareto front of bad frames against replica-hours, and whether the
//! fused score's front dominates every other: at each replica-hours level another family
//! reaches, the fused score has a setting that costs no more and loses no more frames.

use crate::compare::Policy;
use crate::sweep::{self, Scored};

/// One family's front.
#[derive(Debug, Clone, PartialEq)]
pub struct Front {
    /// The family's name ([`crate::compare::Policy::family`]).
    pub family: &'static str,
    /// Indices into the scored settings, by replica-hours.
    pub points: Vec<usize>,
}

/// Every family's front, in the order the families first appear in `scored`.
#[must_use]
pub fn by_family(scored: &[Scored]) -> Vec<Front> {
    let mut families: Vec<&'static str> = Vec::new();
    for s in scored {
        let family = s.setting.policy.family();
        if !families.contains(&family) {
            families.push(family);
        }
    }
    families
        .into_iter()
        .map(|family| {
            let members: Vec<usize> = (0..scored.len())
                .filter(|&i| scored[i].setting.policy.family() == family)
                .collect();
            Front {
                family,
                points: sweep::pareto(scored, &members),
            }
        })
        .collect()
}

/// How one family's front stands against the fused score's.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The family.
    pub family: &'static str,
    /// Its front's points that some fused point matches or beats on both counts.
    pub dominated: Vec<usize>,
    /// Its points that no fused point beats, at a cost some fused setting reaches: where the
    /// fused score loses.
    pub losses: Vec<usize>,
    /// Its points cheaper than every fused setting (no fused setting spends so little).
    pub cheaper: Vec<usize>,
}

impl Verdict {
    /// Whether the fused front dominates this family's wherever the fused score reaches.
    #[must_use]
    pub fn fused_dominates(&self) -> bool {
        self.losses.is_empty()
    }
}

/// Each non-fused family's front judged against the fused score's (`fused`), in `fronts`' order.
#[must_use]
pub fn verdicts(scored: &[Scored], fronts: &[Front], fused: &Front) -> Vec<Verdict> {
    let cheapest_fused = fused
        .points
        .iter()
        .map(|&i| scored[i].replica_hours)
        .fold(f64::INFINITY, f64::min);
    fronts
        .iter()
        .filter(|f| f.family != fused.family)
        .map(|front| {
            let mut verdict = Verdict {
                family: front.family,
                dominated: Vec::new(),
                losses: Vec::new(),
                cheaper: Vec::new(),
            };
            for &i in &front.points {
                let p = &scored[i];
                let beaten = fused.points.iter().any(|&q| {
                    scored[q].replica_hours <= p.replica_hours + 1e-9
                        && scored[q].bad_pct() <= p.bad_pct() + 1e-9
                });
                if beaten {
                    verdict.dominated.push(i);
                } else if p.replica_hours < cheapest_fused {
                    verdict.cheaper.push(i);
                } else {
                    verdict.losses.push(i);
                }
            }
            verdict
        })
        .collect()
}

/// The duty-alone setting at the duty target and scale-down behavior of the fused setting
/// `fused` — what the shipped defaults are held against; `None` when it was not run.
#[must_use]
pub fn duty_counterpart(scored: &[Scored], fused: usize) -> Option<usize> {
    let setting = &scored[fused].setting;
    let target = setting.score()?.gpu_target_pct;
    scored.iter().position(|s| {
        matches!(s.setting.policy, Policy::GpuOnly(t) if (t - target).abs() < 1e-9)
            && s.setting.down_window_s == setting.down_window_s
            && s.setting.down_percent == setting.down_percent
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use framescale_core::score::ScoreConfig;

    use crate::sweep::scored_for_tests as scored;

    #[test]
    fn a_front_per_family_and_where_the_fused_score_loses() {
        let fused = || Policy::Fused(ScoreConfig::default());
        let all = [
            scored(fused(), 10, 2.0),
            scored(fused(), 4, 3.0),
            scored(fused(), 6, 3.5), // beaten by the one before
            scored(Policy::GpuOnly(65.0), 12, 2.5),
            scored(Policy::GpuOnly(55.0), 3, 4.0),
            scored(Policy::Cpu(70.0), 80, 1.0),
            scored(Policy::Cpu(30.0), 5, 2.5),
        ];
        let fronts = by_family(&all);
        let names: Vec<_> = fronts.iter().map(|f| f.family).collect();
        assert_eq!(names, ["fused score", "duty only", "CPU utilization"]);
        assert_eq!(fronts[0].points, [0, 1]);
        let verdicts = verdicts(&all, &fronts, &fronts[0]);
        // Duty: 12 % at 2.5 is beaten by 10 % at 2.0; 3 % at 4.0 is better than any fused
        // point that costs no more: a loss.
        assert_eq!(verdicts[0].dominated, [3]);
        assert_eq!(verdicts[0].losses, [4]);
        assert!(!verdicts[0].fused_dominates());
        // CPU: 80 % at 1.0 is cheaper than any fused setting; 5 % at 2.5 beats 10 % at 2.0.
        assert_eq!(verdicts[1].cheaper, [5]);
        assert_eq!(verdicts[1].losses, [6]);
        // Duty alone at the fused setting's 65 % and behavior.
        assert_eq!(duty_counterpart(&all, 0), Some(3));
        assert_eq!(duty_counterpart(&all, 3), None, "not a fused setting");
    }
}
