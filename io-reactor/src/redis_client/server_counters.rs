//! A Redis server's own counters (`INFO commandstats` and `INFO cpu`), so a
//! benchmark or an operator can say what some work cost the server: the
//! server's count, not the client's guess.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Commands executed per name and CPU used, since the server started (or
/// its last `CONFIG RESETSTAT`). Subtract two readings for what happened
/// between them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedisServerCounters {
    /// Calls per command name (lower case). Commands a Lua script runs are
    /// counted here too, beside the script's own call.
    pub calls: BTreeMap<String, u64>,
    /// The server's CPU seconds (`used_cpu_user + used_cpu_sys`, every
    /// thread of the server process).
    pub cpu_s: f64,
}

impl RedisServerCounters {
    /// Reads the counters from the text of `INFO commandstats` and `INFO cpu`.
    pub fn parse(commandstats: &str, cpu: &str) -> RedisServerCounters {
        let calls = commandstats
            .lines()
            .filter_map(|line| {
                let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = fields.split(',').find_map(|f| f.strip_prefix("calls="))?.parse().ok()?;
                Some((name.to_string(), calls))
            })
            .collect();
        let field = |key: &str| {
            cpu.lines()
                .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':')?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        RedisServerCounters { calls, cpu_s: field("used_cpu_user") + field("used_cpu_sys") }
    }

    /// What happened from `self` to the later reading `after`, leaving out
    /// `INFO` (the readings' own commands); commands not called are left out.
    pub fn until(&self, after: &RedisServerCounters) -> RedisServerCounters {
        let calls = after
            .calls
            .iter()
            .filter(|(name, _)| name.as_str() != "info")
            .map(|(name, n)| (name.clone(), n.saturating_sub(self.calls.get(name).copied().unwrap_or(0))))
            .filter(|(_, n)| *n > 0)
            .collect();
        RedisServerCounters { calls, cpu_s: after.cpu_s - self.cpu_s }
    }

    /// Every call counted.
    pub fn commands(&self) -> u64 {
        self.calls.values().sum()
    }

    /// The `n` most-called commands, most first, as `name=calls`.
    pub fn top(&self, n: usize) -> String {
        let mut calls: Vec<_> = self.calls.iter().collect();
        calls.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        calls.iter().take(n).map(|(name, calls)| format!("{name}={calls}")).collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_subtract_per_command_and_leave_out_info() {
        let before = "# Commandstats\r\ncmdstat_xadd:calls=10,usec=50,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=2,usec=1\r\n";
        let after = "# Commandstats\r\ncmdstat_xadd:calls=25,usec=90\r\ncmdstat_xack:calls=7,usec=9\r\ncmdstat_info:calls=4,usec=2\r\ncmdstat_ping:calls=3,usec=1\r\n";
        let cpu = |u: &str, s: &str| {
            format!("# CPU\r\nused_cpu_sys:{s}\r\nused_cpu_user:{u}\r\nused_cpu_sys_children:9.0\r\n")
        };
        let a = RedisServerCounters::parse(before, &cpu("1.5", "0.5"));
        let b = RedisServerCounters::parse(after, &cpu("2.0", "1.25"));
        let cost = a.until(&b);
        assert_eq!(cost.commands(), 15 + 7 + 3);
        assert_eq!(cost.calls.get("xadd"), Some(&15));
        assert!(!cost.calls.contains_key("info"));
        assert!((cost.cpu_s - 1.25).abs() < 1e-9, "{}", cost.cpu_s);
        assert_eq!(cost.top(2), "xadd=15 xack=7");
    }
}
