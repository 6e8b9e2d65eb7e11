//! `cargo xtask eval-recs --train F --test F [--mode static|incremental|both] [--n 20]
//! [--strategies a,b,…]`: offline evaluation of the recommendation strategies on a click log.
//!
//! Input files are tab-separated `SessionId  ItemId  Time` with a header (Time in Unix seconds,
//! fractions allowed). The protocol is the usual one for session-based recommendation: train on
//! the train file; in the test file drop clicks on items never seen in training, then sessions
//! with fewer than 2 clicks; for every prefix of every test session ask for `n` items from the
//! prefix, and the target is the next click. Every strategy is scored side by side on the same
//! predictions: HR@n, MRR@n, catalogue coverage, popularity bias, training time, prediction
//! latency and model memory.
//!
//! Each prediction is asked twice. Once with nothing excluded, the standard protocol that
//! published figures use. Once as the product page serves it: the query is built by
//! [`PageContext`], as the collector builds it, with the latest click as the product on screen,
//! which is never recommended; a target that repeats the latest click is a miss there.
//!
//! The models are built and queried through `retailmind-recommend`'s public API
//! (`ModelState::from_clicks`, `observe_click`, `recommend`): the code the collector serves, not a
//! copy. Each strategy gets a model with only the parts it reads, so its training time and memory
//! are its own. Two modes: `static` freezes the models after training; `incremental` replays the
//! test clicks in time order and feeds each one into the models after the prediction it is the
//! target of, as the processor will in production.
//!
//! The debug build (what `cargo xtask` runs) re-runs itself as a release build, so the latencies
//! are those of optimised code.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use retailmind_recommend::{
    strategy, Click, ModelConfig, ModelState, PageContext, Query, Strategy,
};

use crate::util::{run, workspace_root};

const USAGE: &str = "usage: cargo xtask eval-recs --train FILE --test FILE \
[--mode static|incremental|both] [--n 20] [--strategies popular,trending,v-sknn,sr,stan,sr+v-sknn,stan+sr]";

#[derive(Debug)]
struct Args {
    train: PathBuf,
    test: PathBuf,
    modes: Vec<Mode>,
    n: usize,
    strategies: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Static,
    Incremental,
}

pub fn run_eval(args: &[&str]) -> Result<()> {
    let parsed = parse_args(args)?;
    if cfg!(debug_assertions) {
        eprintln!("eval-recs: running the release build (cargo run --release -p xtask)");
        return run(Command::new(env!("CARGO"))
            .current_dir(workspace_root())
            .args("run --release --quiet -p xtask -- eval-recs".split(' '))
            .args(args));
    }
    evaluate(&parsed)
}

fn parse_args(args: &[&str]) -> Result<Args> {
    let (mut train, mut test) = (None, None);
    let mut modes = vec![Mode::Static, Mode::Incremental];
    let mut n = 20;
    // By default every strategy but "bought together", which needs orders.
    let mut strategies: Vec<String> = strategy::NAMES
        .iter()
        .filter(|&&s| s != "bought-together")
        .map(|s| s.to_string())
        .collect();
    let mut it = args.iter().copied();
    while let Some(flag) = it.next() {
        if !["--train", "--test", "--mode", "--n", "--strategies"].contains(&flag) {
            bail!("unknown option {flag}\n{USAGE}");
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag {
            "--train" => train = Some(PathBuf::from(value)),
            "--test" => test = Some(PathBuf::from(value)),
            "--mode" => {
                modes = match value {
                    "static" => vec![Mode::Static],
                    "incremental" => vec![Mode::Incremental],
                    "both" => vec![Mode::Static, Mode::Incremental],
                    _ => bail!("--mode must be static, incremental or both\n{USAGE}"),
                }
            }
            "--n" => {
                n = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .context("--n needs a positive number")?
            }
            "--strategies" => {
                strategies = value.split(',').map(str::to_owned).collect();
                for name in &strategies {
                    ensure!(
                        strategy::by_name(name).is_some(),
                        "unknown strategy {name:?}; known: {}",
                        strategy::NAMES.join(", ")
                    );
                }
            }
            _ => unreachable!("options are checked before their value is read"),
        }
    }
    Ok(Args {
        train: train.context(USAGE)?,
        test: test.context(USAGE)?,
        modes,
        n,
        strategies,
    })
}

/// Parses a `SessionId  ItemId  Time` log; errors name the file, line (1-based) and field.
fn parse_log<'a>(text: &'a str, path: &Path) -> Result<Vec<Click<'a>>> {
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.trim_end_matches('\r').split('\t').collect(),
        None => bail!(
            "{}: empty file, expected a header SessionId\tItemId\tTime",
            path.display()
        ),
    };
    let column = |name: &str| {
        header.iter().position(|h| *h == name).with_context(|| {
            format!(
                "{}:1: header has no {name} column (found {header:?})",
                path.display()
            )
        })
    };
    let (s_col, i_col, t_col) = (column("SessionId")?, column("ItemId")?, column("Time")?);
    let mut clicks = Vec::new();
    for (ix, line) in lines {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let at = |col: usize, name: &str| -> Result<&'a str> {
            let value = fields.get(col).copied().unwrap_or("");
            ensure!(
                !value.is_empty(),
                "{}:{}: field {name} is missing or empty",
                path.display(),
                ix + 1
            );
            Ok(value)
        };
        let time_text = at(t_col, "Time")?;
        let time: f64 = time_text
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite())
            .with_context(|| {
                format!(
                    "{}:{}: field Time: {time_text:?} is not a number of Unix seconds",
                    path.display(),
                    ix + 1
                )
            })?;
        clicks.push(Click {
            session: at(s_col, "SessionId")?,
            item: at(i_col, "ItemId")?,
            time,
        });
    }
    Ok(clicks)
}

/// The test sessions after the protocol's filtering: known items only, at least 2 clicks, each
/// session's clicks in time order.
struct TestSet<'a> {
    sessions: Vec<(&'a str, Vec<Click<'a>>)>,
    clicks_read: usize,
    clicks_known: usize,
}

impl<'a> TestSet<'a> {
    fn new(test: &[Click<'a>], known: &HashSet<&str>) -> Self {
        let mut order: Vec<&'a str> = Vec::new();
        let mut by_session: HashMap<&'a str, Vec<Click<'a>>> = HashMap::new();
        let mut clicks_known = 0;
        for c in test.iter().filter(|c| known.contains(c.item)) {
            clicks_known += 1;
            by_session
                .entry(c.session)
                .or_insert_with(|| {
                    order.push(c.session);
                    Vec::new()
                })
                .push(*c);
        }
        let sessions = order
            .into_iter()
            .filter_map(|s| {
                let mut clicks = by_session.remove(s)?;
                clicks.sort_by(|a, b| a.time.total_cmp(&b.time));
                (clicks.len() >= 2).then_some((s, clicks))
            })
            .collect();
        TestSet {
            sessions,
            clicks_read: test.len(),
            clicks_known,
        }
    }

    fn predictions(&self) -> usize {
        self.sessions.iter().map(|(_, c)| c.len() - 1).sum()
    }

    /// Predictions whose target repeats the click before it: the product on screen, which the
    /// product page never shows.
    fn repeats(&self) -> usize {
        self.sessions
            .iter()
            .map(|(_, c)| c.windows(2).filter(|w| w[0].item == w[1].item).count())
            .sum()
    }
}

/// One strategy under evaluation: its own model and its tallies, one per way of asking.
struct Arm {
    strategy: Box<dyn Strategy>,
    model: ModelState,
    train_time: Duration,
    next_click: Tally,
    product_page: Tally,
}

/// The scores of one strategy asked one way.
struct Tally {
    hits: usize,
    reciprocal_ranks: f64,
    predictions: usize,
    /// Per catalogue item: recommended at least once.
    recommended: Vec<bool>,
    popularity_sum: f64,
    slots: usize,
    latencies_ns: Vec<u64>,
}

/// What a [`Tally`] comes to.
#[derive(Debug, PartialEq)]
struct Summary {
    hit_rate: f64,
    mrr: f64,
    /// Share of catalogue items recommended at least once.
    coverage: f64,
    /// Mean popularity percentile of the recommended items.
    popularity: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Summary {
    /// The titles of [`Summary::columns`] for lists of `n`.
    fn header(n: usize) -> String {
        format!(
            "{:>7} {:>7} {:>9} {:>9} {:>8} {:>8}",
            format!("HR@{n}"),
            format!("MRR@{n}"),
            "coverage",
            "pop.pct",
            "p50 µs",
            "p99 µs"
        )
    }

    fn columns(&self) -> String {
        format!(
            "{:>7.4} {:>7.4} {:>8.1}% {:>8.1}% {:>8.1} {:>8.1}",
            self.hit_rate,
            self.mrr,
            100.0 * self.coverage,
            100.0 * self.popularity,
            self.p50_us,
            self.p99_us
        )
    }
}

impl Tally {
    fn new(catalogue_len: usize) -> Self {
        Tally {
            hits: 0,
            reciprocal_ranks: 0.0,
            predictions: 0,
            recommended: vec![false; catalogue_len],
            popularity_sum: 0.0,
            slots: 0,
            latencies_ns: Vec::new(),
        }
    }

    /// Scores one answer, best first, against `target`.
    fn record<'r>(
        &mut self,
        catalogue: &Catalogue<'_>,
        answer: impl IntoIterator<Item = &'r str>,
        target: &str,
        took: Duration,
    ) {
        self.latencies_ns.push(took.as_nanos() as u64);
        self.predictions += 1;
        for (rank, item) in answer.into_iter().enumerate() {
            if item == target {
                self.hits += 1;
                self.reciprocal_ranks += 1.0 / (rank + 1) as f64;
            }
            if let Some(&ix) = catalogue.index.get(item) {
                self.recommended[ix] = true;
                self.popularity_sum += catalogue.percentile[ix];
            }
            self.slots += 1;
        }
    }

    fn summary(&self) -> Summary {
        let mut latencies = self.latencies_ns.clone();
        latencies.sort_unstable();
        let predictions = self.predictions.max(1) as f64;
        let covered = self.recommended.iter().filter(|&&r| r).count();
        Summary {
            hit_rate: self.hits as f64 / predictions,
            mrr: self.reciprocal_ranks / predictions,
            coverage: covered as f64 / self.recommended.len().max(1) as f64,
            popularity: self.popularity_sum / self.slots.max(1) as f64,
            p50_us: percentile_us(&latencies, 0.5),
            p99_us: percentile_us(&latencies, 0.99),
        }
    }
}

/// Training items: their index in `recommended` and popularity percentile (the share of training
/// items clicked less often, ties counted half).
struct Catalogue<'a> {
    index: HashMap<&'a str, usize>,
    percentile: Vec<f64>,
}

impl<'a> Catalogue<'a> {
    fn new(train: &[Click<'a>]) -> Self {
        let mut counts: HashMap<&'a str, u32> = HashMap::new();
        for c in train {
            *counts.entry(c.item).or_default() += 1;
        }
        let mut sorted: Vec<u32> = counts.values().copied().collect();
        sorted.sort_unstable();
        let total = sorted.len() as f64;
        let mut index = HashMap::with_capacity(counts.len());
        let mut percentile = Vec::with_capacity(counts.len());
        for (item, count) in counts {
            let below = sorted.partition_point(|&c| c < count);
            let equal = sorted.partition_point(|&c| c <= count) - below;
            index.insert(item, percentile.len());
            percentile.push((below as f64 + equal as f64 / 2.0) / total);
        }
        Catalogue { index, percentile }
    }
}

impl Arm {
    fn train(name: &str, train: &[Click<'_>], catalogue_len: usize) -> Self {
        let strategy = strategy::by_name(name).expect("names are checked when parsed");
        let config = ModelConfig::default().only(strategy.needs());
        let started = Instant::now();
        let model = ModelState::from_clicks(config, train.iter().copied());
        Arm {
            strategy,
            model,
            train_time: started.elapsed(),
            next_click: Tally::new(catalogue_len),
            product_page: Tally::new(catalogue_len),
        }
    }

    /// Asks for `n` items both ways and scores the answers against `target`, the next click.
    fn predict(&mut self, catalogue: &Catalogue<'_>, asked: &Asked<'_>, target: &str, n: usize) {
        let ways = [
            (&asked.next_click, &mut self.next_click),
            (&asked.product_page, &mut self.product_page),
        ];
        for (query, tally) in ways {
            let started = Instant::now();
            let recs = self.model.recommend(self.strategy.as_ref(), query, n);
            let took = started.elapsed();
            tally.record(catalogue, recs.iter().map(|r| r.item), target, took);
        }
    }
}

/// The two queries of one prediction, from the same session prefix.
struct Asked<'q> {
    next_click: Query<'q>,
    product_page: Query<'q>,
}

impl<'q> Asked<'q> {
    fn new(session_id: Option<&'q str>, page: &'q PageContext<'q>, time: f64) -> Self {
        let next_click = Query {
            session_id,
            clicks: &page.clicks,
            time: Some(time),
            ..Query::default()
        };
        Asked {
            next_click,
            product_page: Query {
                context_item: page.context_item,
                ..next_click
            },
        }
    }
}

/// The product page of a session prefix: the page names the product on screen, the product
/// just clicked, as the storefront's product page does.
fn product_page<'a>(prefix: &[&'a str]) -> PageContext<'a> {
    PageContext::new(prefix.iter().copied(), prefix.last().copied(), true)
}

fn evaluate(args: &Args) -> Result<()> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))
    };
    let (train_text, test_text) = (read(&args.train)?, read(&args.test)?);
    let train = parse_log(&train_text, &args.train)?;
    let test = parse_log(&test_text, &args.test)?;
    ensure!(!train.is_empty(), "{}: no clicks", args.train.display());
    let catalogue = Catalogue::new(&train);
    let known: HashSet<&str> = catalogue.index.keys().copied().collect();
    let test_set = TestSet::new(&test, &known);
    let train_sessions: HashSet<&str> = train.iter().map(|c| c.session).collect();
    println!(
        "train {}: {} clicks, {} sessions, {} items",
        args.train.display(),
        train.len(),
        train_sessions.len(),
        known.len()
    );
    println!(
        "test  {}: {} clicks, {} on items seen in training, {} sessions with >= 2 of them, {} predictions",
        args.test.display(),
        test_set.clicks_read,
        test_set.clicks_known,
        test_set.sessions.len(),
        test_set.predictions()
    );
    println!(
        "      {} predictions ({:.1}%) have the product on screen as their target (a repeated click)",
        test_set.repeats(),
        100.0 * test_set.repeats() as f64 / test_set.predictions().max(1) as f64
    );
    ensure!(
        test_set.predictions() > 0,
        "{}: no test session has 2 clicks on known items",
        args.test.display()
    );
    for &mode in &args.modes {
        let mut arms: Vec<Arm> = args
            .strategies
            .iter()
            .map(|s| Arm::train(s, &train, known.len()))
            .collect();
        let started = Instant::now();
        match mode {
            Mode::Static => run_static(&mut arms, &catalogue, &test_set, args.n),
            Mode::Incremental => run_incremental(&mut arms, &catalogue, &test_set, args.n),
        }
        println!();
        match mode {
            Mode::Static => println!("mode: static (models frozen after training; test clicks are not fed in)"),
            Mode::Incremental => println!(
                "mode: incremental (test clicks replayed in time order; each is fed into the models with \
                 observe_click right after the prediction it is the target of, as in production)"
            ),
        }
        print_table(&arms, args.n, mode);
        println!("({:.1} s for this mode)", started.elapsed().as_secs_f64());
    }
    if !args.strategies.iter().any(|s| s == "bought-together") {
        println!("\nbought-together is not evaluated: a click log has no orders (it would equal popular).");
    }
    Ok(())
}

fn run_static(arms: &mut [Arm], catalogue: &Catalogue<'_>, test: &TestSet<'_>, n: usize) {
    for (_, clicks) in &test.sessions {
        let items: Vec<&str> = clicks.iter().map(|c| c.item).collect();
        for k in 1..items.len() {
            let page = product_page(&items[..k]);
            let asked = Asked::new(None, &page, clicks[k - 1].time);
            for arm in arms.iter_mut() {
                arm.predict(catalogue, &asked, items[k], n);
            }
        }
    }
}

fn run_incremental(arms: &mut [Arm], catalogue: &Catalogue<'_>, test: &TestSet<'_>, n: usize) {
    // Test session ids get a prefix so that they can never extend a training session.
    let keys: Vec<String> = test
        .sessions
        .iter()
        .map(|(s, _)| format!("test/{s}"))
        .collect();
    let items: Vec<Vec<&str>> = test
        .sessions
        .iter()
        .map(|(_, c)| c.iter().map(|c| c.item).collect())
        .collect();
    let mut events: Vec<(f64, usize, usize)> = Vec::new();
    for (s, (_, clicks)) in test.sessions.iter().enumerate() {
        events.extend(clicks.iter().enumerate().map(|(k, c)| (c.time, s, k)));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (time, s, k) in events {
        let target = items[s][k];
        if k > 0 {
            let page = product_page(&items[s][..k]);
            let asked = Asked::new(Some(&keys[s]), &page, test.sessions[s].1[k - 1].time);
            for arm in arms.iter_mut() {
                arm.predict(catalogue, &asked, target, n);
            }
        }
        for arm in arms.iter_mut() {
            arm.model.observe_click(&keys[s], target, time);
        }
    }
}

fn percentile_us(sorted_ns: &[u64], q: f64) -> f64 {
    let at = ((sorted_ns.len() as f64 - 1.0) * q).round() as usize;
    sorted_ns.get(at).map_or(0.0, |&ns| ns as f64 / 1000.0)
}

fn print_table(arms: &[Arm], n: usize, mode: Mode) {
    println!(
        "next click, nothing excluded (the standard protocol, comparable with published figures):"
    );
    println!(
        "{:<10} {} {:>9} {:>11}",
        "strategy",
        Summary::header(n),
        "train ms",
        "memory KiB"
    );
    for arm in arms {
        println!(
            "{:<10} {} {:>9.1} {:>11}",
            arm.strategy.name(),
            arm.next_click.summary().columns(),
            arm.train_time.as_secs_f64() * 1000.0,
            arm.model.memory_bytes() / 1024,
        );
    }
    println!(
        "as served on the product page (the query the collector builds; the product on screen, \
         the latest click, is excluded, so a repeated click is a miss):"
    );
    println!("{:<10} {}", "strategy", Summary::header(n));
    for arm in arms {
        let columns = arm.product_page.summary().columns();
        println!("{:<10} {columns}", arm.strategy.name());
    }
    let memory_when = match mode {
        Mode::Static => "after training",
        Mode::Incremental => "after the test clicks were fed in",
    };
    println!(
        "HR: share of next clicks in the list; MRR: mean 1/rank (0 when absent); coverage: share of \
         training items ever recommended; pop.pct: mean popularity percentile of recommended items \
         (50% = a random item; higher = more popularity bias); memory: estimated model state \
         {memory_when}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_log_and_names_the_bad_line_and_field() {
        let path = Path::new("t.tsv");
        let ok = parse_log("SessionId\tItemId\tTime\n1\ta\t10.5\n1\tb\t11\n", path).unwrap();
        assert_eq!(
            ok[1],
            Click {
                session: "1",
                item: "b",
                time: 11.0
            }
        );
        let err = parse_log("SessionId\tItemId\tTime\n1\ta\t10\n2\tb\tsoon\n", path).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.tsv:3: field Time: \"soon\" is not a number of Unix seconds"
        );
        let err = parse_log("SessionId\tItemId\tTime\n1\t\t10\n", path).unwrap_err();
        assert_eq!(err.to_string(), "t.tsv:2: field ItemId is missing or empty");
        let err = parse_log("Session\tItemId\tTime\n", path).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("t.tsv:1: header has no SessionId column"),
            "{err}"
        );
    }

    #[test]
    fn the_test_set_drops_unknown_items_then_short_sessions() {
        let path = Path::new("t.tsv");
        let log = "SessionId\tItemId\tTime\n1\ta\t2\n1\tx\t3\n1\tb\t1\n2\ta\t1\n2\tx\t2\n";
        let test = parse_log(log, path).unwrap();
        let known = HashSet::from(["a", "b"]);
        let set = TestSet::new(&test, &known);
        assert_eq!(set.sessions.len(), 1);
        let items: Vec<&str> = set.sessions[0].1.iter().map(|c| c.item).collect();
        assert_eq!(items, ["b", "a"]);
        assert_eq!((set.clicks_known, set.predictions()), (3, 1));
    }

    /// Clicks a 4, b 3, c 2, d 1 times: popularity percentiles d 1/8, c 3/8, b 5/8, a 7/8
    /// (the share of items clicked less often, each in its own count class counted half).
    const TRAIN: &str = "SessionId\tItemId\tTime\n\
        1\ta\t1\n1\tb\t2\n1\tc\t3\n1\td\t4\n\
        2\ta\t5\n2\tb\t6\n2\tc\t7\n\
        3\ta\t8\n3\tb\t9\n\
        4\ta\t10\n";

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hit_rate_mrr_coverage_and_popularity_by_hand() {
        let train = parse_log(TRAIN, Path::new("train.tsv")).unwrap();
        let catalogue = Catalogue::new(&train);
        let pct = |item: &str| catalogue.percentile[catalogue.index[item]];
        assert_eq!(
            ["a", "b", "c", "d"].map(pct),
            [7.0 / 8.0, 5.0 / 8.0, 3.0 / 8.0, 1.0 / 8.0]
        );

        let mut tally = Tally::new(4);
        // The target at rank 3: a hit worth 1/3.
        tally.record(&catalogue, ["a", "b", "c"], "c", Duration::ZERO);
        // Not in the list: a miss worth 0.
        tally.record(&catalogue, ["a", "b"], "d", Duration::ZERO);
        let s = tally.summary();
        assert!(close(s.hit_rate, 1.0 / 2.0), "{s:?}");
        assert!(close(s.mrr, (1.0 / 3.0) / 2.0), "{s:?}");
        // a, b and c of 4 items were shown.
        assert!(close(s.coverage, 3.0 / 4.0), "{s:?}");
        // Five slots: a, b, c, a, b.
        let popularity = (7.0 + 5.0 + 3.0 + 7.0 + 5.0) / 8.0 / 5.0;
        assert!(close(s.popularity, popularity), "{s:?}");
    }

    #[test]
    fn the_product_page_figures_exclude_the_product_on_screen() {
        let train = parse_log(TRAIN, Path::new("train.tsv")).unwrap();
        let catalogue = Catalogue::new(&train);
        let test = "SessionId\tItemId\tTime\n9\ta\t1\n9\tc\t2\n9\tc\t3\n9\td\t4\n";
        let test = parse_log(test, Path::new("test.tsv")).unwrap();
        let known = catalogue.index.keys().copied().collect();
        let test_set = TestSet::new(&test, &known);
        assert_eq!((test_set.predictions(), test_set.repeats()), (3, 1));
        let mut arms = [Arm::train("popular", &train, 4)];
        run_static(&mut arms, &catalogue, &test_set, 3);

        // Nothing excluded, popular answers a, b, c every time:
        // [a] → c at rank 3, [a c] → c at rank 3, [a c c] → d missed.
        let s = arms[0].next_click.summary();
        assert!(close(s.hit_rate, 2.0 / 3.0), "{s:?}");
        assert!(close(s.mrr, (1.0 / 3.0 + 1.0 / 3.0) / 3.0), "{s:?}");
        assert!(close(s.coverage, 3.0 / 4.0), "{s:?}");
        // On the product page the latest click is not shown:
        // [a] → b c d, c at rank 2; [a c] → a b d, c missed; [a c c] → a b d, d at rank 3.
        let s = arms[0].product_page.summary();
        assert!(close(s.hit_rate, 2.0 / 3.0), "{s:?}");
        assert!(close(s.mrr, (1.0 / 2.0 + 1.0 / 3.0) / 3.0), "{s:?}");
        assert!(close(s.coverage, 1.0), "{s:?}");
        let popularity = (5.0 + 3.0 + 1.0 + 2.0 * (7.0 + 5.0 + 1.0)) / 8.0 / 9.0;
        assert!(close(s.popularity, popularity), "{s:?}");
    }
}
