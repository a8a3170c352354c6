//! Report helpers shared by the parts: the load average printed beside each
//! figure, medians, and the list of failed parts that decides the exit
//! status (a failed part is reported and the run goes on).

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` shows them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The median of `values` (the upper one of an even count); NaN if empty.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The parts of a run that failed, summed up at its end.
#[derive(Debug, Default)]
pub struct Failures(Vec<String>);

impl Failures {
    /// The value of `result`; or, if it failed, prints `{shown} FAILED:
    /// {error}`, records `{label}: {error}` and returns `None`.
    pub fn check<T>(&mut self, result: anyhow::Result<T>, shown: &str, label: &str) -> Option<T> {
        if let Err(e) = &result {
            println!("{shown} FAILED: {e:#}");
        }
        self.check_quietly(result, label)
    }

    /// Like [`Failures::check`], without printing the failure.
    pub fn check_quietly<T>(&mut self, result: anyhow::Result<T>, label: &str) -> Option<T> {
        result
            .map_err(|e| self.0.push(format!("{label}: {e:#}")))
            .ok()
    }

    /// Fails if any part failed, listing them.
    pub fn finish(&self) -> anyhow::Result<()> {
        if !self.0.is_empty() {
            anyhow::bail!(
                "{} part(s) failed:\n  {}",
                self.0.len(),
                self.0.join("\n  ")
            );
        }
        Ok(())
    }
}
