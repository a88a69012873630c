-- Loaded once per run into the template database; each test gets a copy of it.
CREATE TABLE fruit (name text PRIMARY KEY, count int NOT NULL);
INSERT INTO fruit (name, count) VALUES ('apple', 3), ('pear', 5), ('plum', 7);
