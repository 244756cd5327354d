//! The invoice PDF read back: text extraction, font embedding, pagination, determinism.

use super::*;
use lopdf::{Dictionary, Document, Object};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn sample() -> InvoiceDocument {
    let line = |description: &str, amount: &str| {
        let (description, amount) = (description.into(), amount.into());
        InvoiceLine {
            description,
            amount,
        }
    };
    InvoiceDocument {
        seller_name: "Acme Cloud Ltd".into(),
        seller_address: vec!["1 Infinite Loop".into(), "Cupertino, CA 95014".into()],
        number: "INV-000042".into(),
        issued_on: "2026-11-30".into(),
        period_start: Some("2026-11-30".into()),
        period_end: Some("2026-12-29".into()),
        due_date: "2027-01-14".into(),
        status: "PENDING".into(),
        bill_to_name: "Müller GmbH".into(),
        bill_to_lines: vec!["Königstraße 5".into(), "70173 Stuttgart".into()],
        lines: vec![
            line("Pro plan", "1,234.50"),
            line("Seats × 3 at 10 € each", "30.00"),
        ],
        total: "1,264.50".into(),
        currency: "USD".into(),
        notes: Some("Thank you for your business.\nPayable by bank transfer.".into()),
    }
}

/// All text of the document, whitespace runs collapsed to one space: lopdf ends every text
/// object (BT … ET) with a newline, and each line or cell is a text object of its own.
fn text_of(doc: &InvoiceDocument) -> Result<(Document, String), Box<dyn std::error::Error>> {
    let pdf = Document::load_mem(&render_invoice(doc)?)?;
    let text = pdf.extract_text(&pdf.get_pages().keys().copied().collect::<Vec<_>>())?;
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok((pdf, text))
}

fn dicts_of_type<'a>(pdf: &'a Document, kind: &[u8]) -> Vec<&'a Dictionary> {
    let dicts = pdf.objects.values().filter_map(|object| match object {
        Object::Dictionary(dict) => Some(dict),
        Object::Stream(stream) => Some(&stream.dict),
        _ => None,
    });
    dicts.filter(|dict| name(dict, b"Type") == kind).collect()
}

fn name<'a>(dict: &'a Dictionary, key: &[u8]) -> &'a [u8] {
    dict.get(key).and_then(Object::as_name).unwrap_or(b"")
}

fn stream<'a>(
    pdf: &'a Document,
    dict: &Dictionary,
    key: &[u8],
) -> lopdf::Result<&'a lopdf::Stream> {
    pdf.get_object(dict.get(key)?.as_reference()?)?.as_stream()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn text_round_trips_and_output_is_deterministic() -> TestResult {
    let (pdf, text) = text_of(&sample())?;
    assert_eq!(pdf.get_pages().len(), 1);
    for expected in [
        "Acme Cloud Ltd INVOICE 1 Infinite Loop INV-000042",
        "Cupertino, CA 95014 Issued 2026-11-30 Due 2027-01-14 Status PENDING",
        "BILL TO Müller GmbH Königstraße 5 70173 Stuttgart",
        "Period: 2026-11-30 – 2026-12-29",
        "Description Amount Pro plan 1,234.50 USD Seats × 3 at 10 € each 30.00 USD",
        "Total 1,264.50 USD",
        "NOTES Thank you for your business. Payable by bank transfer.",
        "INV-000042 · Page 1 of 1",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from {text:?}"
        );
    }

    assert_eq!(render_invoice(&sample())?, render_invoice(&sample())?);
    let info = pdf.get_dictionary(pdf.trailer.get(b"Info")?.as_reference()?)?;
    assert_eq!(info.get(b"Title")?.as_str()?, b"Invoice INV-000042");
    assert_eq!(info.get(b"Producer")?.as_str()?, b"tms");
    assert!(info.get(b"CreationDate").is_err());
    Ok(())
}

#[test]
fn embeds_compressed_font_subsets_and_no_standard_font() -> TestResult {
    let bytes = render_invoice(&sample())?;
    let pdf = Document::load_mem(&bytes)?;
    let fonts = dicts_of_type(&pdf, b"Font");
    assert_eq!(fonts.len(), 4, "two Type0 fonts and their CIDFonts");
    for font in fonts {
        let base = String::from_utf8_lossy(name(font, b"BaseFont")).into_owned();
        let (tag, family) = base.split_once('+').ok_or("no subset tag")?;
        assert!(
            tag.len() == 6 && tag.bytes().all(|b| b.is_ascii_uppercase()),
            "{base}"
        );
        assert!(family.starts_with("LiberationSans"), "{base}");
        match name(font, b"Subtype") {
            b"Type0" => {
                assert_eq!(name(font, b"Encoding"), b"Identity-H");
                let cmap = stream(&pdf, font, b"ToUnicode")?.decompressed_content()?;
                assert!(contains(&cmap, b"beginbfchar"));
            }
            b"CIDFontType2" => assert!(!font.get(b"W")?.as_array()?.is_empty()),
            other => panic!("unexpected font type {other:?}"),
        }
    }
    for standard in ["Helvetica", "Times", "Courier", "Symbol", "ZapfDingbats"] {
        assert!(!contains(&bytes, standard.as_bytes()), "{standard}");
    }

    let descriptors = dicts_of_type(&pdf, b"FontDescriptor");
    assert_eq!(descriptors.len(), 2);
    for descriptor in descriptors {
        let file = stream(&pdf, descriptor, b"FontFile2")?;
        assert_eq!(name(&file.dict, b"Filter"), b"FlateDecode");
        let program = file.decompressed_content()?;
        // A subset: far smaller than the whole font (about 400 KB).
        assert!(program.len() < 60_000, "{} bytes", program.len());
        assert_eq!(file.dict.get(b"Length1")?.as_i64()?, program.len() as i64);
        Face::parse(&program, 0)?;
    }
    for page in pdf.get_pages().values() {
        let contents = stream(&pdf, pdf.get_dictionary(*page)?, b"Contents")?;
        assert_eq!(name(&contents.dict, b"Filter"), b"FlateDecode");
    }
    Ok(())
}

#[test]
fn long_invoice_continues_on_further_pages() -> TestResult {
    let mut doc = sample();
    doc.lines = (1..=200)
        .map(|i| InvoiceLine {
            description: format!("Service item {i:03} for tenant t-{i:03}"),
            amount: "10.00".into(),
        })
        .collect();
    doc.lines[7].description = "A very long description that certainly does not fit on one \
        line of the table and therefore has to be wrapped, measured with the advance widths \
        of the font, onto several lines"
        .into();
    let (pdf, text) = text_of(&doc)?;
    let pages = pdf.get_pages().len();
    assert!(pages > 1, "{pages} page(s)");
    assert_eq!(text.matches(" 10.00 USD").count(), doc.lines.len());
    // Each amount follows the first line of its description.
    let descriptions = text.replace(" 10.00 USD", "");
    for line in &doc.lines {
        assert!(
            descriptions.contains(&line.description),
            "{:?} missing",
            line.description
        );
    }
    assert_eq!(
        text.matches("Description Amount").count(),
        pages,
        "header on every page"
    );
    assert_eq!(text.matches("Total 1,264.50 USD").count(), 1);
    assert!(text.contains(&format!("INV-000042 · Page {pages} of {pages}")));
    Ok(())
}

#[test]
fn minimal_document_renders() -> TestResult {
    let doc = InvoiceDocument {
        seller_address: Vec::new(),
        period_start: None,
        period_end: None,
        bill_to_lines: Vec::new(),
        lines: vec![InvoiceLine {
            description: String::new(),
            amount: "0.00".into(),
        }],
        notes: None,
        ..sample()
    };
    let (_, text) = text_of(&doc)?;
    assert!(text.contains("Status PENDING BILL TO Müller GmbH Description Amount 0.00 USD"));
    assert!(
        text.contains("Total 1,264.50 USD") && !text.contains("NOTES"),
        "{text}"
    );
    assert!(!text.contains("Period"), "{text}");

    let empty = InvoiceDocument {
        lines: Vec::new(),
        notes: Some(" \n ".into()),
        ..doc
    };
    assert!(text_of(&empty)?.1.contains("Amount Total 1,264.50 USD"));
    Ok(())
}

#[test]
fn characters_the_font_lacks_print_as_question_marks() -> TestResult {
    let mut doc = sample();
    doc.bill_to_name = "漢字\u{0}\tKunde".into();
    doc.lines[0].description = format!("{}🙂", "x".repeat(2_000));
    let (_, text) = text_of(&doc)?;
    assert!(text.contains("?? Kunde") && text.contains("xx?"), "{text}");
    Ok(())
}

#[test]
fn wrapping_respects_the_width() -> TestResult {
    let fonts = fonts()?;
    let text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod";
    let lines = fonts.wrap(Style::Regular, BODY_SIZE, text, 120.0);
    assert!(lines.len() > 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|line| fonts.width(Style::Regular, BODY_SIZE, line) <= 120.0)
    );
    assert_eq!(lines.join(" "), text);

    let word = "W".repeat(100);
    let lines = fonts.wrap(Style::Bold, BODY_SIZE, &word, 50.0);
    assert!(lines.len() > 5 && lines.concat() == word, "{lines:?}");
    assert_eq!(
        fonts.wrap(Style::Regular, BODY_SIZE, "a\n\nb", 50.0),
        ["a", "", "b"]
    );
    assert_eq!(fonts.wrap(Style::Regular, BODY_SIZE, "", 50.0), [""]);
    Ok(())
}

/// Writes the sample invoice to the path in `TMS_PDF_SAMPLE`, to look at the layout.
#[test]
fn writes_sample_when_asked() -> TestResult {
    if let Some(path) = std::env::var_os("TMS_PDF_SAMPLE") {
        std::fs::write(path, render_invoice(&sample())?)?;
    }
    Ok(())
}
