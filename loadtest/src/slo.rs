//! The sweep's criteria as the user writes them: latency objectives ("p99=200ms"), the rate step
//! ("x1.25", "+500") and shares ("5%"), parsed once with errors that name the flag and value.
//!
//! Owns: their syntax and the test of a measured step against them. Must never: measure.

use std::time::Duration;

/// A latency objective: the quantile `q` must stay at or under `limit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub name: String,
    pub q: f64,
    pub limit: Duration,
}

impl Slo {
    pub fn parse(s: &str) -> anyhow::Result<Slo> {
        let bad = || anyhow::anyhow!("--slo \"{s}\": write it like \"p99=200ms\" or \"p99.9=1s\"");
        let (name, limit) = s.split_once('=').ok_or_else(bad)?;
        let name = name.trim();
        let pct: f64 = name
            .strip_prefix('p')
            .ok_or_else(bad)?
            .parse()
            .map_err(|_| bad())?;
        if !(0.0 < pct && pct < 100.0) {
            return Err(bad());
        }
        let limit = humantime::parse_duration(limit.trim()).map_err(|_| bad())?;
        if limit.is_zero() {
            return Err(bad());
        }
        Ok(Slo {
            name: name.to_string(),
            q: pct / 100.0,
            limit,
        })
    }

    /// "p99<=200ms": the label of this objective in reports and metrics.
    pub fn label(&self) -> String {
        format!("{}<={}", self.name, humantime::format_duration(self.limit))
    }

    pub fn limit_us(&self) -> u64 {
        self.limit.as_micros() as u64
    }
}

/// How the rate rises from one step to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Times(f64),
    Plus(f64),
}

impl Step {
    pub fn parse(s: &str) -> anyhow::Result<Step> {
        let bad = || anyhow::anyhow!("--step \"{s}\": write it like \"x1.25\" or \"+500\"");
        let step = if let Some(f) = s.strip_prefix('x') {
            Step::Times(f.parse().map_err(|_| bad())?)
        } else if let Some(n) = s.strip_prefix('+') {
            Step::Plus(n.parse().map_err(|_| bad())?)
        } else {
            return Err(bad());
        };
        match step {
            Step::Times(f) if f > 1.0 && f.is_finite() => Ok(step),
            Step::Plus(n) if n > 0.0 && n.is_finite() => Ok(step),
            _ => Err(bad()),
        }
    }

    pub fn next(self, rate: f64) -> f64 {
        match self {
            Step::Times(f) => rate * f,
            Step::Plus(n) => rate + n,
        }
    }
}

/// "5%" (or "0.05") as a fraction.
pub fn share(flag: &str, s: &str) -> anyhow::Result<f64> {
    let bad = || anyhow::anyhow!("{flag} \"{s}\": write it like \"5%\"");
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => s.trim().parse::<f64>().map_err(|_| bad())?,
    };
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slos_parse_and_refuse() {
        let s = Slo::parse("p99=200ms").unwrap();
        assert_eq!((s.q, s.limit_us()), (0.99, 200_000));
        assert_eq!(s.label(), "p99<=200ms");
        let s = Slo::parse("p99.9 = 1s").unwrap();
        assert!((s.q - 0.999).abs() < 1e-12);
        for bad in [
            "99=1s", "p99", "p100=1s", "p0=1s", "p99=", "p99=0s", "px=1s", "p99=fast",
        ] {
            assert!(Slo::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn steps_rise() {
        assert_eq!(Step::parse("x1.25").unwrap().next(100.0), 125.0);
        assert_eq!(Step::parse("+50").unwrap().next(100.0), 150.0);
        for bad in ["x1", "x0.5", "+0", "-5", "1.25", "xnan", "+inf"] {
            assert!(Step::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shares_parse() {
        assert_eq!(share("--precision", "5%").unwrap(), 0.05);
        assert_eq!(share("--precision", "0.02").unwrap(), 0.02);
        assert!(share("--precision", "100%").is_err());
        assert!(share("--precision", "-1%").is_err());
        assert!(share("--precision", "lots").is_err());
    }
}
