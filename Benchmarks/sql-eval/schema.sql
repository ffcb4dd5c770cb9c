-- Sentient SQL evaluation schema: a small shop plus multi-tenant tables linked to auth.users.
-- The owner columns hold auth.users ids without a foreign key: a portal's owner role has no
-- REFERENCES privilege on auth.users.
-- Idempotent: drops what it creates, then loads the same rows again.
DROP SCHEMA IF EXISTS reporting CASCADE;
DROP TABLE IF EXISTS public.orders, public.products, public.customers, public.countries, public.todos,
    public.projects, public.memberships, public.orgs, public.notes CASCADE;

CREATE TABLE public.countries (code text PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.customers (
    id integer PRIMARY KEY,
    "fullName" text NOT NULL,
    email text UNIQUE NOT NULL,
    city text,
    country_code text REFERENCES public.countries (code),
    signup_date date NOT NULL
);
CREATE TABLE public.products (
    id integer PRIMARY KEY,
    name text NOT NULL,
    price numeric(10, 2) NOT NULL CHECK (price >= 0),
    category text NOT NULL
);
CREATE TABLE public.orders (
    id integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES public.customers (id),
    product_id integer NOT NULL REFERENCES public.products (id),
    quantity integer NOT NULL,
    total numeric(10, 2) NOT NULL,
    status text NOT NULL DEFAULT 'new',
    ordered_on date NOT NULL
);
CREATE TABLE public.todos (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id uuid NOT NULL DEFAULT auth.uid(),
    title text NOT NULL,
    done boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.orgs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL
);
CREATE TABLE public.memberships (
    user_id uuid NOT NULL DEFAULT auth.uid(),
    org_id bigint NOT NULL REFERENCES public.orgs (id) ON DELETE CASCADE,
    role text NOT NULL DEFAULT 'member',
    PRIMARY KEY (user_id, org_id)
);
CREATE TABLE public.projects (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id bigint NOT NULL REFERENCES public.orgs (id) ON DELETE CASCADE,
    name text NOT NULL,
    budget numeric(12, 2)
);
CREATE SCHEMA reporting;
CREATE TABLE reporting.monthly_sales (month date PRIMARY KEY, revenue numeric(12, 2) NOT NULL);

INSERT INTO public.countries VALUES ('FR', 'France'), ('DE', 'Germany'), ('US', 'United States');
INSERT INTO public.customers VALUES
    (1, 'Ada Lovelace', 'ada@example.com', 'London', NULL, '2024-01-15'),
    (2, 'Marie Curie', 'marie@example.com', 'Paris', 'FR', '2024-02-20'),
    (3, 'Emmy Noether', 'emmy@example.com', 'Berlin', 'DE', '2024-03-05'),
    (4, 'Grace Hopper', 'grace@example.com', 'New York', 'US', '2024-03-18'),
    (5, 'Sophie Germain', 'sophie@example.com', 'Paris', 'FR', '2024-04-01');
INSERT INTO public.products VALUES
    (1, 'Notebook', 3.50, 'stationery'),
    (2, 'Fountain pen', 24.00, 'stationery'),
    (3, 'Desk lamp', 39.90, 'furniture'),
    (4, 'Chair', 120.00, 'furniture');
INSERT INTO public.orders VALUES
    (1, 1, 1, 10, 35.00, 'shipped', '2024-05-01'),
    (2, 1, 2, 1, 24.00, 'shipped', '2024-05-03'),
    (3, 2, 3, 2, 79.80, 'new', '2024-05-04'),
    (4, 3, 4, 1, 120.00, 'shipped', '2024-05-10'),
    (5, 4, 1, 0, 0.00, 'cancelled', '2024-05-11'),
    (6, 5, 2, 3, 72.00, 'new', '2024-05-12'),
    (7, 2, 1, 4, 14.00, 'shipped', '2024-06-01'),
    (8, 3, 3, 1, 39.90, 'new', '2024-06-02');
INSERT INTO reporting.monthly_sales VALUES ('2024-05-01', 330.80), ('2024-06-01', 53.90);
