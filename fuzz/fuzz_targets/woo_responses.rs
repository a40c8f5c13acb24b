//! Decoding arbitrary bytes as every WooCommerce response the client reads (products, orders,
//! webhooks, batch results, categories, notes, the `{code, message, data}` error envelope,
//! settings and system status), and the OAuth 1.0a pieces (Authorization header parsing, PHP
//! parameter grouping, the signature base string).
#![no_main]

use duellsync_woo::fuzzing::{decode_all, inspect_error, read_response};
use duellsync_woo::oauth::{
    base_string, encode, form_decode, parse_authorization_header, php_params, raw_decode, signature,
};
use duellsync_woo::SignatureMethod;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As a success and as an error answer.
    for status in [200, 201, 400, 404, 429, 500] {
        match read_response(status, data) {
            Ok(json) => {
                decode_all(&json);
            }
            Err(e) => inspect_error(&e),
        }
    }

    // OAuth: the text as an Authorization header and as a query string.
    let text = String::from_utf8_lossy(data);
    for header in [text.to_string(), format!("OAuth {text}")] {
        if let Some(pairs) = parse_authorization_header(&header) {
            let params = php_params(pairs);
            let base = base_string("GET", "http://shop.test/wp-json/wc/v3/orders", &params);
            let _ = signature(SignatureMethod::HmacSha1, "cs_secret", &base);
        }
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(data).into_owned().collect();
    let params = php_params(pairs);
    let method = text.split('&').next().unwrap_or("GET");
    let base = base_string(method, &text, &params);
    let _ = signature(SignatureMethod::HmacSha256, &text, &base);
    let _ = (encode(&text), raw_decode(&text), form_decode(&text));
});
