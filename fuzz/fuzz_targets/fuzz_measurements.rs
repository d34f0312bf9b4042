//! Fuzz the measurements reader (`MeasurementsDoc::from_json`, schema
//! `flatcert.measurements/v1`) and the bound calculator's source reader (`read_source`), which
//! dispatches on the schema. Input bytes are decoded lossily so that every input reaches the
//! JSON parser (the CLI reads the file as UTF-8 text; invalid UTF-8 is an I/O error there).
#![no_main]

use std::path::Path;

use flatcert::certify::bound::read_source;
use flatcert::measurements::MeasurementsDoc;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let doc = MeasurementsDoc::from_json(&text, Path::new("fuzz.json"));
    common::check("MeasurementsDoc::from_json", &doc);
    common::check("read_source", &read_source(&text, "fuzz.json"));
    // Anything accepted is valid, so it must serialize again and read back the same.
    if let Ok(doc) = doc {
        let json = doc.to_json().expect("an accepted document serializes");
        let back = MeasurementsDoc::from_json(&json, Path::new("again.json"))
            .expect("a serialized document reads back");
        assert_eq!(back, doc, "JSON round trip changed the document");
    }
});
