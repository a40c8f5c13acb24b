//! A seeded generator of realistic Norwegian retail catalogues: categories "A > B > C" with the
//! right VAT (25 goods, 15 food, 12 transport/cinema, 0 books), variants, offers with and without
//! a period, hidden and deleted products, duplicate item numbers, custom fields, generated
//! images, and stock per department (sometimes fractional or negative). The same seed gives the
//! same catalogue.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};
use rust_decimal::Decimal;
use time::macros::datetime;
use time::Duration as TimeDelta;

use crate::config::SimConfig;
use crate::model::*;
use crate::store::Db;

struct CategorySpec {
    path: &'static str,
    vat: u32,
    nouns: &'static [&'static str],
    /// Price range in whole kroner.
    price: (i64, i64),
    fields: &'static [(&'static str, &'static [&'static str])],
    /// Variant axis (name, values), if products of this category come in variants.
    variants: Option<(&'static str, &'static [&'static str])>,
}

const SIZES: &[&str] = &["XS", "S", "M", "L", "XL"];
const SHOE_SIZES: &[&str] = &["38", "39", "40", "41", "42", "43", "44"];
const COLOURS: &[&str] = &[
    "Svart",
    "Hvit",
    "Rød",
    "Marineblå",
    "Grønn",
    "Grå",
    "Sennep",
];
const MATERIALS: &[&str] = &["Ull", "Merinoull", "Bomull", "Lin", "Polyester", "Alpakka"];

const CATEGORIES: &[CategorySpec] = &[
    CategorySpec {
        path: "Klær > Herre > Jakker",
        vat: 25,
        nouns: &[
            "Vinterjakke",
            "Regnjakke",
            "Dunjakke",
            "Softshelljakke",
            "Vindjakke",
        ],
        price: (699, 3999),
        fields: &[("Materiale", MATERIALS), ("Farge", COLOURS)],
        variants: Some(("Størrelse", SIZES)),
    },
    CategorySpec {
        path: "Klær > Dame > Gensere",
        vat: 25,
        nouns: &[
            "Strikkegenser",
            "Cardigan",
            "Fleecegenser",
            "Ullgenser",
            "Hettegenser",
        ],
        price: (399, 1999),
        fields: &[("Materiale", MATERIALS), ("Farge", COLOURS)],
        variants: Some(("Størrelse", SIZES)),
    },
    CategorySpec {
        path: "Klær > Barn > Regntøy",
        vat: 25,
        nouns: &["Regnsett", "Regnbukse", "Sydvest", "Gummistøvler"],
        price: (199, 899),
        fields: &[("Farge", COLOURS)],
        variants: Some(("Størrelse", &["92", "98", "104", "110", "116", "122"])),
    },
    CategorySpec {
        path: "Sko > Tursko > Fjellsko",
        vat: 25,
        nouns: &["Fjellsko", "Turstøvel", "Joggesko", "Vintersko"],
        price: (899, 3499),
        fields: &[
            ("Farge", COLOURS),
            ("Membran", &["Gore-Tex", "Ingen", "Egen membran"]),
        ],
        variants: Some(("Størrelse", SHOE_SIZES)),
    },
    CategorySpec {
        path: "Sport > Ski > Langrenn",
        vat: 25,
        nouns: &[
            "Langrennsski",
            "Skistaver",
            "Skismøring",
            "Skibindinger",
            "Feller",
        ],
        price: (149, 5999),
        fields: &[("Nivå", &["Nybegynner", "Mosjonist", "Konkurranse"])],
        variants: None,
    },
    CategorySpec {
        path: "Sport > Friluft > Telt og sovepose",
        vat: 25,
        nouns: &["Telt", "Sovepose", "Liggeunderlag", "Hengekøye", "Tursekk"],
        price: (299, 7999),
        fields: &[
            ("Vekt", &["0,8 kg", "1,2 kg", "2,1 kg", "3,5 kg"]),
            ("Farge", COLOURS),
        ],
        variants: None,
    },
    CategorySpec {
        path: "Hjem > Kjøkken > Kniver",
        vat: 25,
        nouns: &[
            "Kokkekniv",
            "Brødkniv",
            "Santokukniv",
            "Knivblokk",
            "Slipestein",
        ],
        price: (249, 2999),
        fields: &[("Stål", &["Rustfritt", "Karbonstål", "Damaskus"])],
        variants: None,
    },
    CategorySpec {
        path: "Hjem > Kjøkken > Kaffetraktere",
        vat: 25,
        nouns: &[
            "Kaffetrakter",
            "Kaffekvern",
            "Presskanne",
            "Melkeskummer",
            "Termokanne",
        ],
        price: (199, 4999),
        fields: &[("Farge", COLOURS)],
        variants: None,
    },
    CategorySpec {
        path: "Hjem > Interiør > Tekstiler",
        vat: 25,
        nouns: &["Pute", "Pledd", "Duk", "Løper", "Saueskinn"],
        price: (149, 1499),
        fields: &[("Materiale", MATERIALS), ("Farge", COLOURS)],
        variants: Some(("Farge", COLOURS)),
    },
    CategorySpec {
        path: "Hobby > Garn > Ullgarn",
        vat: 25,
        nouns: &["Ullgarn", "Sokkegarn", "Alpakkagarn", "Mohairgarn"],
        price: (49, 199),
        fields: &[(
            "Løpelengde",
            &["50 g = 105 m", "50 g = 175 m", "100 g = 200 m"],
        )],
        variants: Some(("Farge", COLOURS)),
    },
    CategorySpec {
        path: "Elektronikk > Lyd > Hodetelefoner",
        vat: 25,
        nouns: &[
            "Hodetelefoner",
            "Øreplugger",
            "Bluetooth-høyttaler",
            "Lydplanke",
        ],
        price: (299, 4999),
        fields: &[("Tilkobling", &["Bluetooth", "Kabel", "Trådløs"])],
        variants: None,
    },
    CategorySpec {
        path: "Mat og drikke > Kaffe > Hele bønner",
        vat: 15,
        nouns: &[
            "Kaffebønner",
            "Filtermalt kaffe",
            "Espressobønner",
            "Kokekaffe",
        ],
        price: (59, 249),
        fields: &[
            (
                "Opprinnelse",
                &["Etiopia", "Colombia", "Brasil", "Kenya", "Guatemala"],
            ),
            ("Brenning", &["Lys", "Medium", "Mørk"]),
        ],
        variants: None,
    },
    CategorySpec {
        path: "Mat og drikke > Sjokolade > Plater",
        vat: 15,
        nouns: &[
            "Melkesjokolade",
            "Mørk sjokolade",
            "Nøttesjokolade",
            "Konfekt",
        ],
        price: (25, 149),
        fields: &[("Kakaoinnhold", &["35 %", "55 %", "70 %", "85 %"])],
        variants: None,
    },
    CategorySpec {
        path: "Bøker > Skjønnlitteratur > Romaner",
        vat: 0,
        nouns: &["Roman", "Krimroman", "Novellesamling", "Diktsamling"],
        price: (149, 499),
        fields: &[
            ("Språk", &["Bokmål", "Nynorsk", "Engelsk"]),
            ("Innbinding", &["Innbundet", "Pocket"]),
        ],
        variants: None,
    },
    CategorySpec {
        path: "Bøker > Barnebøker > Bildebøker",
        vat: 0,
        nouns: &["Bildebok", "Pekebok", "Høytlesningsbok"],
        price: (99, 299),
        fields: &[("Alder", &["0–3 år", "3–6 år", "6–9 år"])],
        variants: None,
    },
    CategorySpec {
        path: "Opplevelser > Kino > Gavekort",
        vat: 12,
        nouns: &["Kinogavekort", "Kinobillett", "Familiebillett"],
        price: (120, 600),
        fields: &[],
        variants: None,
    },
    CategorySpec {
        path: "Reise > Billetter > Ferje",
        vat: 12,
        nouns: &["Ferjebillett", "Båtbillett", "Klippekort"],
        price: (45, 900),
        fields: &[],
        variants: None,
    },
];

const ADJECTIVES: &[&str] = &[
    "Klassisk",
    "Myk",
    "Lett",
    "Robust",
    "Varm",
    "Elegant",
    "Praktisk",
    "Rustikk",
    "Moderne",
    "Nordisk",
    "Solid",
    "Komfortabel",
    "Eksklusiv",
    "Økologisk",
    "Håndlaget",
];
const BRANDS: &[&str] = &[
    "Fjellstad",
    "Vikhaug",
    "Solberg & Co",
    "Lofotlys",
    "Hardangerverk",
    "Nordlys Design",
    "Trollheim",
    "Breidablikk",
    "Skogheim",
    "Havbris",
    "Kvitfjell",
    "Rondane",
];
const SUPPLIERS: &[&str] = &[
    "Nordisk Engros AS",
    "Fjordimport AS",
    "Vestlandsgrossisten AS",
    "Oslo Varehandel AS",
    "Trøndelag Agentur AS",
];
const SENTENCES: &[&str] = &[
    "Laget for norske forhold.",
    "Enkel å vedlikeholde og tåler daglig bruk.",
    "Et populært valg blant våre kunder.",
    "Produsert med omtanke for miljøet.",
    "Perfekt som gave.",
    "Holder seg fin i mange år.",
];
const FIRST_NAMES: &[&str] = &[
    "Ola", "Kari", "Per", "Ingrid", "Lars", "Silje", "Jonas", "Nora", "Erik", "Ida", "Magnus",
    "Sofie", "Anders", "Hanne", "Kristian", "Marte",
];
const LAST_NAMES: &[&str] = &[
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Kristiansen",
    "Jensen",
    "Karlsen",
    "Berg",
    "Haugen",
    "Dahl",
    "Lie",
];
const CITIES: &[(&str, &str)] = &[
    ("Oslo", "0150"),
    ("Bergen", "5003"),
    ("Trondheim", "7010"),
    ("Stavanger", "4006"),
    ("Tromsø", "9008"),
    ("Kristiansand", "4610"),
    ("Drammen", "3015"),
];
const STREETS: &[&str] = &[
    "Storgata",
    "Kirkeveien",
    "Fjordgata",
    "Skolegata",
    "Strandveien",
    "Bakkeveien",
];

fn ean13(rng: &mut StdRng) -> String {
    let mut digits = vec![7u32, 0];
    for _ in 0..10 {
        digits.push(rng.random_range(0..10));
    }
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { *d } else { d * 3 })
        .sum();
    digits.push((10 - sum % 10) % 10);
    digits.iter().map(|d| char::from(b'0' + *d as u8)).collect()
}

/// A price like 199, 249.50 or 39.90 (whole kroner ending in 9, food with øre).
fn price(rng: &mut StdRng, (lo, hi): (i64, i64), food: bool) -> Decimal {
    let whole = rng.random_range(lo..=hi) / 10 * 10 + 9;
    if food && rng.random_bool(0.5) {
        Decimal::new(whole * 100 + 90 - 100, 2)
    } else {
        Decimal::from(whole)
    }
}

fn stock(rng: &mut StdRng, fractional: bool) -> Decimal {
    let roll = rng.random_range(0..100);
    if roll < 3 {
        Decimal::from(-rng.random_range(1..4)) // oversold in the shop
    } else if roll < 12 {
        Decimal::ZERO
    } else if fractional {
        Decimal::new(rng.random_range(0..5000), 1)
    } else {
        Decimal::from(rng.random_range(1..60))
    }
}

/// Fills the database: departments, categories, customers, products and stock.
pub(crate) fn populate(db: &mut Db, config: &SimConfig) {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let token = |rng: &mut StdRng| -> String {
        (0..40)
            .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
            .collect()
    };
    db.departments = vec![
        SimDepartment {
            department_id: 1,
            department_name: "Nettlager".into(),
            api_token: token(&mut rng),
            city: "Oslo".into(),
        },
        SimDepartment {
            department_id: 2,
            department_name: "Butikk Bergen".into(),
            api_token: token(&mut rng),
            city: "Bergen".into(),
        },
    ];
    let category_ids: Vec<u64> = CATEGORIES
        .iter()
        .map(|c| db.create_category(c.path))
        .collect();
    db.create_category("DIVERSE");

    for _ in 0..config.customers {
        let id = db.next_customer_id;
        db.next_customer_id += 1;
        let first = *FIRST_NAMES.choose(&mut rng).unwrap_or(&"Ola");
        let last = *LAST_NAMES.choose(&mut rng).unwrap_or(&"Nordmann");
        let (city, zip) = *CITIES.choose(&mut rng).unwrap_or(&("Oslo", "0150"));
        let street = *STREETS.choose(&mut rng).unwrap_or(&"Storgata");
        db.customers.insert(
            id,
            SimCustomer {
                customer_id: id,
                customer_name: format!("{first} {last}"),
                phone: format!("{}", rng.random_range(40_000_000u32..99_999_990)),
                email: format!(
                    "{}.{}{}@example.no",
                    first.to_lowercase(),
                    last.to_lowercase(),
                    id
                ),
                primary_address: format!("{street} {}", rng.random_range(1..120)),
                primary_zip: zip.into(),
                city: city.into(),
            },
        );
    }

    let base = datetime!(2025-01-01 00:00:00);
    let deps: Vec<u64> = db.departments.iter().map(|d| d.department_id).collect();
    let mut next_number = 10_000u64;
    let mut numbers: Vec<String> = Vec::new();
    while (db.products.len()) < config.products {
        let ci = rng.random_range(0..CATEGORIES.len());
        let cat = &CATEGORIES[ci];
        let food = cat.vat == 15;
        let brand = *BRANDS.choose(&mut rng).unwrap_or(&"Fjellstad");
        let adjective = *ADJECTIVES.choose(&mut rng).unwrap_or(&"Klassisk");
        let noun = *cat.nouns.choose(&mut rng).unwrap_or(&"Vare");
        let name = format!("{brand} {adjective} {noun}");
        let left = config.products - db.products.len();
        let variant_count = match cat.variants {
            Some((_, values)) if left > 2 && rng.random_bool(0.25) => {
                rng.random_range(2..=values.len().min(4)).min(left - 1)
            }
            _ => 0,
        };
        let number = if !numbers.is_empty() && rng.random_bool(0.005) {
            // DUELL item numbers are not unique in live catalogues.
            numbers[rng.random_range(0..numbers.len())].clone()
        } else {
            next_number += 1;
            next_number.to_string()
        };
        numbers.push(number.clone());
        let price = price(&mut rng, cat.price, food);
        let offer = rng.random_bool(0.15).then(|| {
            let pct = Decimal::new(rng.random_range(60..90), 2);
            (price * pct).round_dp(0) - Decimal::ONE
        });
        let (offer_from, offer_to) = match offer {
            Some(_) if rng.random_bool(0.5) => {
                let start = base + TimeDelta::days(rng.random_range(0..400));
                // A few are short timed offers (one day) that the sync should skip.
                let days = if rng.random_bool(0.2) {
                    1
                } else {
                    rng.random_range(7..60)
                };
                (Some(start), Some(start + TimeDelta::days(days)))
            }
            _ => (None, None),
        };
        let mut fields = vec![SimCustomField {
            description: "Merke".into(),
            value: brand.into(),
        }];
        for (label, values) in cat.fields {
            if rng.random_bool(0.8) {
                fields.push(SimCustomField {
                    description: (*label).into(),
                    value: (*values.choose(&mut rng).unwrap_or(&"")).into(),
                });
            }
        }
        let barcode = match rng.random_range(0..100) {
            0..15 => String::new(),
            15..20 => format!("0{}", ean13(&mut rng)),
            _ => ean13(&mut rng),
        };
        let visible = rng.random_bool(0.92);
        let deleted = rng.random_bool(0.02);
        let updated = base + TimeDelta::seconds(rng.random_range(0..300 * 86_400));
        let description = match rng.random_range(0..10) {
            0 => None,
            _ => Some(format!(
                "{name}. {} {}",
                SENTENCES.choose(&mut rng).unwrap_or(&""),
                SENTENCES.choose(&mut rng).unwrap_or(&"")
            )),
        };
        let supplier = (*SUPPLIERS.choose(&mut rng).unwrap_or(&"")).to_string();
        let cost = (price * Decimal::new(rng.random_range(35..65), 2)).round_dp(2);
        let parent_id = db.next_product_id;
        db.next_product_id += 1;
        let product = SimProduct {
            product_id: parent_id,
            product_number: number.clone(),
            product_name: name.clone(),
            description,
            barcode: if variant_count > 0 {
                String::new()
            } else {
                barcode
            },
            category_id: category_ids[ci],
            category_name: cat.path.into(),
            vatrate_percent: cat.vat,
            price_inc_vat: price,
            special_price: offer,
            special_price_start_date: offer_from,
            special_price_end_date: offer_to,
            cost_price: cost,
            stock_price: cost,
            supplier_name: supplier,
            is_deleted: deleted,
            is_parent: variant_count > 0,
            parent_variant: 0,
            view_on_webshop: visible,
            image: if rng.random_bool(0.9) {
                SimImage::Generated(format!("p{parent_id}"))
            } else {
                SimImage::None
            },
            last_update_date: updated,
            custom_fields: fields.clone(),
        };
        for d in &deps {
            let qty = if variant_count > 0 {
                Decimal::ZERO
            } else {
                let fractional = food && rng.random_bool(0.3);
                stock(&mut rng, fractional)
            };
            db.stock.insert((*d, parent_id), qty);
        }
        db.products.insert(parent_id, product.clone());
        if let (true, Some((axis, values))) = (variant_count > 0, cat.variants) {
            let offset = rng.random_range(0..values.len());
            for v in 0..variant_count {
                let value = values[(offset + v) % values.len()];
                let id = db.next_product_id;
                db.next_product_id += 1;
                let mut vf = fields.clone();
                vf.push(SimCustomField {
                    description: axis.into(),
                    value: value.into(),
                });
                let variant = SimProduct {
                    product_id: id,
                    product_number: format!("{number}-{value}"),
                    product_name: format!("{name} - {value}"),
                    barcode: ean13(&mut rng),
                    is_parent: false,
                    parent_variant: parent_id,
                    image: SimImage::Generated(format!("p{id}")),
                    custom_fields: vf,
                    ..product.clone()
                };
                for d in &deps {
                    db.stock.insert((*d, id), stock(&mut rng, false));
                }
                db.products.insert(id, variant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(products: usize, seed: u64) -> Db {
        let config = SimConfig {
            products,
            seed,
            ..SimConfig::default()
        };
        let mut db = Db::new(&config);
        populate(&mut db, &config);
        db
    }

    #[test]
    fn same_seed_gives_the_same_catalogue() {
        let a = db(500, 7);
        let b = db(500, 7);
        assert_eq!(a.products, b.products);
        assert_eq!(a.products.len(), 500);
        assert_ne!(a.products, db(500, 8).products);
    }

    #[test]
    fn generates_a_100k_product_catalogue() {
        let d = db(100_000, 3);
        assert_eq!(d.products.len(), 100_000);
        assert_eq!(d.stock.len(), 200_000);
    }

    #[test]
    fn catalogue_has_variants_offers_hidden_and_all_vat_rates() {
        let d = db(2000, 1);
        let ps: Vec<&SimProduct> = d.products.values().collect();
        assert!(ps.iter().any(|p| p.is_parent));
        assert!(ps.iter().any(|p| p.parent_variant != 0));
        assert!(ps.iter().any(|p| p.special_price.is_some()));
        assert!(ps.iter().any(|p| p.special_price_end_date.is_some()));
        assert!(ps.iter().any(|p| !p.view_on_webshop));
        assert!(ps.iter().any(|p| p.is_deleted));
        for vat in [0, 12, 15, 25] {
            assert!(ps.iter().any(|p| p.vatrate_percent == vat), "vat {vat}");
        }
        assert!(ps
            .iter()
            .all(|p| p.category_name.matches(" > ").count() == 2));
    }
}
