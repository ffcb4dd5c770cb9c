/// Placeholder until the SMTP client lands.
enum SMTPPlaceholder {}
