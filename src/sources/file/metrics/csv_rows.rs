//! CSV metric files (`timestamp,instance_id,value`, header optional): read as a stream into
//! runs of consecutive rows of one instance, and read back run by run.

use super::*;

/// The CSV reader of metrics files (and of a run's bytes read back): no header handling (the
/// first row is looked at by [`ingest_csv`]), `#` comments, cells trimmed.
pub(super) fn csv_reader<R: std::io::Read>(reader: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .buffer_capacity(CSV_BUFFER)
        .from_reader(reader)
}

/// One CSV row as an instance's sample, or why it is skipped.
pub(super) fn csv_sample<'r>(
    rec: &'r csv::ByteRecord,
    cols: (usize, usize, usize),
    unit: &str,
) -> std::result::Result<(std::borrow::Cow<'r, str>, DateTime<Utc>, f64), String> {
    let field = |i: usize| rec.get(i).map(String::from_utf8_lossy);
    let (Some(ts), Some(inst), Some(val)) = (field(cols.0), field(cols.1), field(cols.2)) else {
        return Err("expected 3 columns: timestamp,instance_id,value".into());
    };
    let Ok(t) = parse_instant(&ts) else {
        return Err(format!("bad timestamp `{}`", truncate(&ts, 40)));
    };
    let Some(v) = val.parse::<f64>().ok().filter(|v| v.is_finite()) else {
        return Err(format!("bad value `{}`", truncate(&val, 40)));
    };
    if inst.is_empty() {
        return Err("empty instance_id".into());
    }
    if let Some(why) = crate::sources::impossible_memory_value(v, unit) {
        return Err(why);
    }
    Ok((inst, t, v))
}

/// A CSV metrics file, read as a stream: its usable rows indexed as runs (consecutive rows of
/// one instance), bad rows skipped with their line. The columns it uses come back (a header
/// row may reorder them); an I/O error is the file's.
pub(super) fn ingest_csv<R: std::io::Read>(
    reader: R,
    file: &Path,
    unit: &str,
    part: &mut Part,
) -> Result<(usize, usize, usize)> {
    let origin = file.display().to_string();
    let mut reader = csv_reader(reader);
    // Column positions: timestamp, instance, value. A header row may reorder them.
    let mut cols = (0usize, 1usize, 2usize);
    let mut rec = csv::ByteRecord::new();
    // The run being read: its instance and byte span, and its samples.
    let mut run: Option<(String, u64, u64)> = None;
    let mut samples: Vec<Sample> = Vec::new();
    let mut n = 0usize;
    loop {
        let row = n;
        n += 1;
        match reader.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                if let csv::ErrorKind::Io(_) = e.kind() {
                    if let csv::ErrorKind::Io(io) = e.into_kind() {
                        return Err(Error::io(file, io));
                    }
                    unreachable!("matched as an I/O error above");
                }
                let at = format!("{origin}:{}", row + 1);
                part.skipped.push(at, format!("unreadable CSV row: {e}"));
                continue;
            }
        }
        let (line, start) = rec
            .position()
            .map_or((row as u64 + 1, 0), |p| (p.line(), p.byte()));
        let end = reader.position().byte();
        if row == 0 {
            let names: Vec<String> = rec
                .iter()
                .map(|b| String::from_utf8_lossy(b).to_ascii_lowercase())
                .collect();
            let find = |opts: &[&str]| names.iter().position(|c| opts.contains(&c.as_str()));
            if let (Some(t), Some(i), Some(v)) = (
                find(&["timestamp", "time", "ts"]),
                find(&["instance_id", "instance", "instanceid"]),
                find(&["value", "mem_used_percent", "memory"]),
            ) {
                cols = (t, i, v);
                continue;
            }
        }
        match csv_sample(&rec, cols, unit) {
            Err(why) => part.skipped.push(format!("{origin}:{line}"), why),
            Ok((inst, t, v)) => {
                match &mut run {
                    Some((id, _, run_end)) if *id == *inst => *run_end = end,
                    _ => {
                        if let Some((id, from, to)) = run.take() {
                            part.add_run(&id, RunKind::CsvRows, (from, to), &samples);
                            samples.clear();
                        }
                        run = Some((inst.into_owned(), start, end));
                    }
                }
                samples.push((t, v));
            }
        }
    }
    if let Some((id, from, to)) = run {
        part.add_run(&id, RunKind::CsvRows, (from, to), &samples);
    }
    Ok(cols)
}

/// The samples of a run of CSV rows read back: `None` when a usable row is another
/// instance's (the file changed).
pub(super) fn csv_run_samples<R: std::io::Read>(
    reader: &mut csv::Reader<R>,
    cols: (usize, usize, usize),
    unit: &str,
    instance: &str,
) -> Option<Vec<Sample>> {
    let mut rec = csv::ByteRecord::new();
    let mut out = Vec::new();
    while reader.read_byte_record(&mut rec).unwrap_or(true) {
        if let Ok((inst, t, v)) = csv_sample(&rec, cols, unit) {
            if inst != instance {
                return None;
            }
            out.push((t, v));
        }
    }
    Some(out)
}
