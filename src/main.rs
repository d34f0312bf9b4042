fn main() {
    println!("flatcert");
}
