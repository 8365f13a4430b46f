use owlclaw::{task, Context};

#[derive(serde::Serialize, serde::Deserialize)]
struct Receipt {
    id: String,
}

#[task]
async fn non_result_user_type(_ctx: Context) -> Receipt {
    Receipt { id: String::new() }
}

fn main() {}
