"""Notebook cells for `spark-nb eval --set notebook`, in the percent format (Jupytext, VS Code): `# %%` starts a cell.

Written for the evaluation, never trained on: cells as people write them in notebooks, with pandas, matplotlib and
numpy, small helpers, prints of shapes, % and .format strings, imports at the top and debugging prints. Nothing
runs them (no data files, no network): the edit families turn each cell into tasks, and every cell must parse.
"""

# %%
import pandas as pd
import numpy as np
import matplotlib.pyplot as plt

# load the raw export from the shop system
df = pd.read_csv("sales_2023.csv")
df.head()

# %%
import os
import seaborn as sns
import pandas as pd
from pathlib import Path

DATA_DIR = Path("data")
files = sorted(DATA_DIR.glob("*.csv"))
print(len(files), "files")

# %%
df = pd.read_csv("sales_2023.csv", parse_dates=["date"])
print(df.shape)
print(df.dtypes)
df.describe()

# %%
df["month"] = df["date"].dt.month
# revenue per calendar month (all regions together)
monthly = df.groupby("month")["revenue"].sum()
print("total revenue: %.2f" % monthly.sum())
monthly

# %%
summary = df.groupby(["region", "product"]).agg(
    revenue=("revenue", "sum"),
    orders=("order_id", "nunique"),
    avg_price=("price", "mean"),
)
summary = summary.sort_values("revenue", ascending=False)
print("{} region/product pairs".format(len(summary)))
summary.head(10)

# %%
fig, ax = plt.subplots(figsize=(10, 4))
ax.plot(monthly.index, monthly.values, marker="o")
ax.set_xlabel("month")
ax.set_ylabel("revenue (EUR)")
ax.set_title("Revenue per month, 2023")
plt.show()

# %%
def clean_column_names(df):
    df = df.copy()
    df.columns = [c.strip().lower().replace(" ", "_") for c in df.columns]
    return df


df = clean_column_names(df)
df.columns

# %%
missing = df.isna().sum()
missing = missing[missing > 0]
print("columns with missing values: %d" % len(missing))
for col, n in missing.items():
    print("  %s: %d (%.1f%%)" % (col, n, 100 * n / len(df)))

# %%
x = np.linspace(0, 2 * np.pi, 200)
y = np.sin(x) * np.exp(-x / 3)  # decays with time constant 3
plt.plot(x, y, label="damped sine")
plt.plot(x, np.exp(-x / 3), "--", label="envelope")
plt.legend()
plt.xlabel("x")
plt.ylabel("y")
plt.show()

# %%
a = np.random.rand(100, 3)
print(a.shape)
means = a.mean(axis=0)
stds = a.std(axis=0)
z = (a - means) / stds
print(z.mean(axis=0), z.std(axis=0))

# %%
def normalize(values):
    """Scale values linearly to the range [0, 1]."""
    lo, hi = values.min(), values.max()
    return (values - lo) / (hi - lo)


scores = np.array([3.5, 7.2, 9.9, 1.4, 6.0])
normalize(scores)

# %%
results = []
for threshold in [0.1, 0.2, 0.3, 0.4, 0.5]:
    results.append((threshold, (df["score"] > threshold).mean()))
results

# %%
squares = []
for i in range(10):
    squares.append(i ** 2)
print(squares)

# %%
names = [name.title() for name in df["customer"].unique()]
print("{} customers".format(len(names)))

# %%
def load_data(path):
    df = pd.read_csv(path)
    print("loaded", df.shape)
    df = df.dropna(subset=["id"])
    print("after dropna", df.shape)
    return df


train = load_data("train.csv")
test = load_data("test.csv")

# %%
print(train.shape, test.shape)
print(train.columns.tolist())

# %%
import matplotlib.pyplot as plt
import numpy as np

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for ax, col in zip(axes, ["age", "income", "score"]):
    ax.hist(df[col].dropna(), bins=30, color="steelblue")
    ax.set_title(col)
    ax.set_xlabel(col)
    ax.set_ylabel("count")
plt.tight_layout()
plt.show()

# %%
corr = df[["age", "income", "score"]].corr()
print(corr.round(2))
plt.imshow(corr, cmap="coolwarm", vmin=-1, vmax=1)
plt.colorbar()
plt.xticks(range(3), corr.columns)
plt.yticks(range(3), corr.columns)
plt.title("Correlation")
plt.show()

# %%
def percent_change(old: float, new: float) -> float:
    return (new - old) / old * 100


change = percent_change(monthly.iloc[0], monthly.iloc[-1])
print("revenue changed by %.1f%% over the year" % change)

# %%
counts = {}
for word in text.split():
    word = word.lower().strip(".,!?")
    counts[word] = counts.get(word, 0) + 1
top = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[:10]
top

# %%
from collections import Counter
import re

words = re.findall(r"[a-z']+", text.lower())
counter = Counter(words)
counter.most_common(20)

# %%
df = df[df["price"] > 0]  # refunds have a negative price, drop them
df["total"] = df["price"] * df["quantity"]
print("rows: {}, total: {:.2f}".format(len(df), df["total"].sum()))

# %%
by_day = df.set_index("date").resample("D")["total"].sum()
rolling = by_day.rolling(7).mean()
ax = by_day.plot(alpha=0.4, label="daily")
rolling.plot(ax=ax, label="7-day mean")
ax.set_ylabel("sales")
ax.legend()

# %%
def summarize(series):
    return {
        "mean": series.mean(),
        "median": series.median(),
        "std": series.std(),
        "min": series.min(),
        "max": series.max(),
    }


summarize(df["total"])

# %%
stats = {col: summarize(df[col]) for col in ["price", "quantity", "total"]}
pd.DataFrame(stats).T

# %%
pivot = df.pivot_table(index="region", columns="month", values="total", aggfunc="sum", fill_value=0)
print(pivot.shape)
pivot.style.background_gradient(cmap="Greens")

# %%
top_products = df.groupby("product")["total"].sum().nlargest(10)
top_products.plot(kind="barh", figsize=(8, 5))
plt.xlabel("sales")
plt.title("Top 10 products")
plt.gca().invert_yaxis()
plt.show()

# %%
matrix = np.arange(12).reshape(3, 4)
print(matrix)
print("shape:", matrix.shape)
print("row sums:", matrix.sum(axis=1))
print("col sums:", matrix.sum(axis=0))

# %%
A = np.array([[2.0, 1.0], [1.0, 3.0]])
b = np.array([3.0, 5.0])
x = np.linalg.solve(A, b)
print("solution:", x)
print("check:", A @ x - b)

# %%
def rmse(y_true, y_pred):
    """Root mean squared error."""
    return np.sqrt(np.mean((y_true - y_pred) ** 2))


def mae(y_true, y_pred):
    """Mean absolute error."""
    return np.mean(np.abs(y_true - y_pred))


print("rmse %.3f, mae %.3f" % (rmse(y_test, preds), mae(y_test, preds)))

# %%
from sklearn.model_selection import train_test_split
from sklearn.linear_model import LinearRegression

X = df[["age", "income"]].values
y = df["score"].values
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
model = LinearRegression().fit(X_train, y_train)
preds = model.predict(X_test)
print(model.coef_, model.intercept_)

# %%
plt.scatter(y_test, preds, s=10, alpha=0.6)
lims = [min(y_test.min(), preds.min()), max(y_test.max(), preds.max())]
plt.plot(lims, lims, "k--")
plt.xlabel("actual")
plt.ylabel("predicted")
plt.title("Predicted vs actual")
plt.show()

# %%
for name, group in df.groupby("region"):
    print(name, len(group), group["total"].mean())

# %%
def bucket_age(age):
    if age < 18:
        return "child"
    elif age < 65:
        return "adult"
    else:
        return "senior"


df["age_group"] = df["age"].apply(bucket_age)
df["age_group"].value_counts()

# %%
df["signup"] = pd.to_datetime(df["signup"], errors="coerce")
df["days_since_signup"] = (pd.Timestamp("2024-01-01") - df["signup"]).dt.days
print(df["days_since_signup"].describe())

# %%
# left join so that orders without a known customer are kept
merged = orders.merge(customers, on="customer_id", how="left")
print(orders.shape, customers.shape, merged.shape)
merged.head()

# %%
unmatched = merged[merged["name"].isna()]
print("%d orders have no customer" % len(unmatched))
unmatched["customer_id"].unique()[:20]

# %%
def top_n(df: pd.DataFrame, column: str, n: int = 5) -> pd.DataFrame:
    return df.sort_values(column, ascending=False).head(n)


top_n(df, "total")

# %%
threshold = 100
big = df[df["total"] > threshold]
print("orders above {}: {} ({:.1%})".format(threshold, len(big), len(big) / len(df)))

# %%
mask = (df["region"] == "north") & (df["month"] >= 6)
subset = df.loc[mask, ["date", "product", "total"]]
print(subset.shape)
subset.sort_values("date").tail()

# %%
def moving_average(values, window):
    result = []
    for i in range(len(values) - window + 1):
        result.append(sum(values[i:i + window]) / window)
    return result


moving_average([1, 2, 3, 4, 5, 6, 7], 3)

# %%
temps = np.array([21.5, 23.1, 19.8, 25.4, 22.0, 24.7, 20.3])
hot_days = [t for t in temps if t > 22]
print("hot days:", len(hot_days))
print("mean temperature: %.1f C" % temps.mean())

# %%
celsius = [12, 18, 25, 31]
fahrenheit = []
for c in celsius:
    fahrenheit.append(c * 9 / 5 + 32)
print(fahrenheit)

# %%
def to_fahrenheit(c):
    return c * 9 / 5 + 32


weather["temp_f"] = weather["temp_c"].apply(to_fahrenheit)
weather[["temp_c", "temp_f"]].head()

# %%
import json

with open("config.json") as f:
    config = json.load(f)
print(config.keys())
print("learning rate: {}".format(config["lr"]))

# %%
rng = np.random.default_rng(0)
samples = rng.normal(loc=5.0, scale=2.0, size=10_000)
print("mean %.3f, std %.3f" % (samples.mean(), samples.std()))
plt.hist(samples, bins=50, density=True)
plt.title("Normal samples")
plt.show()

# %%
def bootstrap_mean(values, n_boot=1000, seed=0):
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_boot):
        sample = rng.choice(values, size=len(values), replace=True)
        means.append(sample.mean())
    return np.percentile(means, [2.5, 97.5])


low, high = bootstrap_mean(df["total"].values)
print("95%% CI: [%.2f, %.2f]" % (low, high))

# %%
df.info()

# %%
print(df["category"].value_counts())
print(df["category"].nunique(), "categories")

# %%
df["category"] = df["category"].str.strip().str.lower()
df["category"] = df["category"].replace({"elec": "electronics", "furn": "furniture"})
df["category"].value_counts().plot(kind="bar")
plt.ylabel("orders")
plt.show()

# %%
# the export sometimes repeats an order when it was edited
dupes = df.duplicated(subset=["order_id"])
print("duplicates:", dupes.sum())
df = df[~dupes]
print(df.shape)

# %%
def describe_column(df, col):
    s = df[col]
    print("column:", col)
    print("dtype:", s.dtype)
    print("missing:", s.isna().sum())
    print("unique:", s.nunique())


for col in ["region", "product", "category"]:
    describe_column(df, col)

# %%
weights = np.array([0.2, 0.3, 0.5])
returns = np.array([[0.01, 0.02, -0.01], [0.03, -0.02, 0.00], [0.00, 0.01, 0.02]])
portfolio = returns @ weights
print("portfolio returns:", portfolio)
print("cumulative: %.4f" % (np.prod(1 + portfolio) - 1))

# %%
def sharpe_ratio(returns, risk_free=0.0):
    excess = returns - risk_free
    return excess.mean() / excess.std() * np.sqrt(252)


sharpe_ratio(daily_returns)

# %%
prices = pd.read_csv("prices.csv", index_col="date", parse_dates=True)
daily_returns = prices["close"].pct_change().dropna()
print(daily_returns.shape)
daily_returns.plot(title="Daily returns")

# %%
img = np.zeros((64, 64))
img[16:48, 16:48] = 1.0
noisy = img + np.random.normal(0, 0.2, img.shape)
fig, (ax1, ax2) = plt.subplots(1, 2)
ax1.imshow(img, cmap="gray")
ax1.set_title("clean")
ax2.imshow(noisy, cmap="gray")
ax2.set_title("noisy")
plt.show()

# %%
def accuracy(y_true, y_pred):
    correct = 0
    for t, p in zip(y_true, y_pred):
        if t == p:
            correct += 1
    return correct / len(y_true)


print("accuracy: {:.2%}".format(accuracy(labels, predictions)))

# %%
epochs = range(1, len(history["loss"]) + 1)
plt.plot(epochs, history["loss"], label="train")
plt.plot(epochs, history["val_loss"], label="validation")
plt.xlabel("epoch")
plt.ylabel("loss")
plt.legend()
plt.title("Training curves")
plt.show()

# %%
best_epoch = int(np.argmin(history["val_loss"])) + 1
print("best epoch: %d, val loss %.4f" % (best_epoch, min(history["val_loss"])))

# %%
import time

start = time.time()
result = df.groupby("customer_id")["total"].agg(["sum", "count", "mean"])
print("took %.2f s" % (time.time() - start))
result.head()

# %%
def fetch_rows(conn, table, limit=100):
    query = "SELECT * FROM %s LIMIT %d" % (table, limit)
    print(query)
    return pd.read_sql(query, conn)


rows = fetch_rows(conn, "orders")

# %%
cols = [c for c in df.columns if c.startswith("feature_")]
print(len(cols), "feature columns")
features = df[cols].fillna(0).values
print(features.shape)

# %%
def scale_features(X):
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std[std == 0] = 1
    return (X - mean) / std


X_scaled = scale_features(features)
print(X_scaled.mean(), X_scaled.std())

# %%
labels = df["label"].values
classes, counts = np.unique(labels, return_counts=True)
for c, n in zip(classes, counts):
    print("class {}: {} samples".format(c, n))

# %%
plt.figure(figsize=(6, 6))
plt.pie(counts, labels=classes, autopct="%1.1f%%")
plt.title("Class balance")
plt.show()

# %%
def split_name(full_name: str) -> tuple[str, str]:
    parts = full_name.split()
    first = parts[0]
    last = parts[-1] if len(parts) > 1 else ""
    return first, last


df[["first", "last"]] = df["name"].apply(lambda n: pd.Series(split_name(n)))

# %%
emails = df["email"].dropna()
domains = [e.split("@")[1] for e in emails if "@" in e]
pd.Series(domains).value_counts().head(10)

# %%
totals = {}
for region, total in zip(df["region"], df["total"]):
    if region not in totals:
        totals[region] = 0
    totals[region] += total
totals

# %%
def count_by(items, key):
    groups = {}
    for item in items:
        k = key(item)
        groups[k] = groups.get(k, 0) + 1
    return groups


count_by(df["email"].dropna(), lambda e: e.endswith(".com"))

# %%
grid = np.meshgrid(np.linspace(-2, 2, 100), np.linspace(-2, 2, 100))
xx, yy = grid
zz = np.exp(-(xx ** 2 + yy ** 2))
plt.contourf(xx, yy, zz, levels=20, cmap="viridis")
plt.colorbar(label="density")
plt.xlabel("x")
plt.ylabel("y")
plt.title("2D Gaussian")
plt.show()

# %%
def gaussian(x, mu, sigma):
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))


xs = np.linspace(-5, 5, 500)
for sigma in [0.5, 1.0, 2.0]:
    plt.plot(xs, gaussian(xs, 0, sigma), label="sigma=%s" % sigma)
plt.legend()
plt.show()

# %%
n_trials = 10000
heads = np.random.binomial(n=10, p=0.5, size=n_trials)
print("P(heads >= 8) ~ %.4f" % (heads >= 8).mean())

# %%
def simulate_walk(steps, seed=None):
    rng = np.random.default_rng(seed)
    moves = rng.choice([-1, 1], size=steps)
    # position after each step
    return np.cumsum(moves)


for seed in range(5):
    plt.plot(simulate_walk(500, seed))
plt.title("Random walks")
plt.xlabel("step")
plt.ylabel("position")
plt.show()

# %%
print("Number of rows:", len(df))
print("Number of columns:", len(df.columns))
print("Memory usage: %.1f MB" % (df.memory_usage(deep=True).sum() / 1e6))

# %%
df = df.rename(columns={"Unnamed: 0": "idx", "Sales Amount": "sales"})
df = df.drop(columns=["idx"])
df.head(3)

# %%
def season(month):
    if month in (12, 1, 2):
        return "winter"
    if month in (3, 4, 5):
        return "spring"
    if month in (6, 7, 8):
        return "summer"
    return "autumn"


df["season"] = df["month"].map(season)
df.groupby("season")["total"].mean().round(2)

# %%
seasonal = df.groupby(["season", "region"])["total"].sum().unstack()
seasonal.plot(kind="bar", stacked=True, figsize=(8, 5))
plt.ylabel("total sales")
plt.title("Sales by season and region")
plt.xticks(rotation=0)
plt.show()

# %%
url_template = "https://api.example.com/v1/items?page={}&size={}"
urls = [url_template.format(page, 50) for page in range(1, 6)]
print(urls[0])

# %%
def parse_price(text):
    """The price in a string like "$1,299.00" as a float (NaN when it is not a number)."""
    text = text.replace("$", "").replace(",", "")
    try:
        return float(text)
    except ValueError:
        return np.nan


df["price"] = df["price_text"].map(parse_price)
print(df["price"].isna().sum(), "prices could not be parsed")

# %%
quantiles = df["price"].quantile([0.25, 0.5, 0.75])
iqr = quantiles[0.75] - quantiles[0.25]
# Tukey's fence: anything above Q3 + 1.5 IQR counts as an outlier
upper = quantiles[0.75] + 1.5 * iqr
outliers = df[df["price"] > upper]
print("outliers: %d of %d" % (len(outliers), len(df)))

# %%
plt.boxplot([df.loc[df["region"] == r, "price"].dropna() for r in regions], labels=regions)
plt.ylabel("price")
plt.title("Price by region")
plt.show()

# %%
regions = sorted(df["region"].unique())
colors = plt.cm.tab10(np.linspace(0, 1, len(regions)))
for region, color in zip(regions, colors):
    part = df[df["region"] == region]
    plt.scatter(part["age"], part["total"], s=8, color=color, label=region)
plt.legend(title="region")
plt.show()

# %%
def cagr(start_value: float, end_value: float, years: float) -> float:
    """Compound annual growth rate between two values."""
    return (end_value / start_value) ** (1 / years) - 1


print("CAGR: {:.2%}".format(cagr(1000, 1850, 5)))

# %%
vector = np.array([3.0, 4.0])
norm = np.linalg.norm(vector)
unit = vector / norm
angle = np.degrees(np.arctan2(vector[1], vector[0]))
print("norm %.2f, angle %.1f degrees" % (norm, angle))

# %%
eigvals, eigvecs = np.linalg.eig(cov)
order = np.argsort(eigvals)[::-1]
eigvals = eigvals[order]
explained = eigvals / eigvals.sum()
print("explained variance:", np.round(explained[:3], 3))

# %%
def pca(X, k):
    Xc = X - X.mean(axis=0)
    cov = np.cov(Xc, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    top = vecs[:, np.argsort(vals)[::-1][:k]]
    return Xc @ top


proj = pca(X_scaled, 2)
plt.scatter(proj[:, 0], proj[:, 1], c=labels, s=5)
plt.title("PCA")
plt.show()

# %%
from datetime import datetime, timedelta

today = datetime.now()
last_week = today - timedelta(days=7)
recent = df[df["date"] >= last_week]
print("orders in the last 7 days: {}".format(len(recent)))

# %%
# save for the modelling notebook
df.to_csv("cleaned.csv", index=False)
print("saved %d rows to cleaned.csv" % len(df))

# %%
report = []
for region in regions:
    part = df[df["region"] == region]
    report.append({"region": region, "orders": len(part), "revenue": part["total"].sum()})
pd.DataFrame(report)

# %%
def make_report(df):
    out = df.groupby("region").agg(orders=("order_id", "count"), revenue=("total", "sum"))
    out["share"] = out["revenue"] / out["revenue"].sum()
    print(out.head())
    return out.sort_values("revenue", ascending=False)


make_report(df)

# %%
print("Done! Processed {} files in {:.1f} seconds".format(len(files), elapsed))

# %%
frames = []
for path in files:
    part = pd.read_csv(path)
    part["source"] = path.name
    frames.append(part)
combined = pd.concat(frames, ignore_index=True)
print(combined.shape)

# %%
def read_all(paths):
    frames = [pd.read_csv(p) for p in paths]
    print("read", len(frames), "frames")
    return pd.concat(frames, ignore_index=True)


all_data = read_all(files)

# %%
ages = df["age"].dropna().astype(int)
bins = [0, 18, 30, 45, 60, 100]
labels_ = ["<18", "18-29", "30-44", "45-59", "60+"]
df["age_bin"] = pd.cut(ages, bins=bins, labels=labels_, right=False)
df["age_bin"].value_counts().sort_index()

# %%
def clip_outliers(s, low=0.01, high=0.99):
    lo, hi = s.quantile(low), s.quantile(high)
    print("clipping to [%.2f, %.2f]" % (lo, hi))
    return s.clip(lo, hi)


df["income"] = clip_outliers(df["income"])

# %%
x = np.arange(10)
y = 2.5 * x + np.random.randn(10)
slope, intercept = np.polyfit(x, y, 1)
plt.scatter(x, y)
plt.plot(x, slope * x + intercept, color="red")
plt.title("y = {:.2f}x + {:.2f}".format(slope, intercept))
plt.show()

# %%
def fit_line(x, y):
    slope, intercept = np.polyfit(x, y, 1)
    residuals = y - (slope * x + intercept)
    r2 = 1 - residuals.var() / y.var()
    return slope, intercept, r2


slope, intercept, r2 = fit_line(x, y)
print("r^2 = %.3f" % r2)

# %%
kernel = np.ones(5) / 5
smoothed = np.convolve(signal, kernel, mode="same")
plt.plot(signal, alpha=0.5, label="raw")
plt.plot(smoothed, label="smoothed")
plt.legend()
plt.show()

# %%
values = [4, 8, 15, 16, 23, 42]
total = 0
for v in values:
    total += v
mean = total / len(values)
print("mean:", mean)

# %%
evens = [n for n in range(20) if n % 2 == 0]
lookup = {n: n ** 2 for n in evens}
print(lookup)

# %%
def fizzbuzz(n):
    out = []
    for i in range(1, n + 1):
        if i % 15 == 0:
            out.append("FizzBuzz")
        elif i % 3 == 0:
            out.append("Fizz")
        elif i % 5 == 0:
            out.append("Buzz")
        else:
            out.append(str(i))
    return out


print(", ".join(fizzbuzz(20)))

# %%
import requests
import pandas as pd
import numpy as np
import sys

print(sys.version)
print(pd.__version__, np.__version__)

# %%
class RunningStats:
    def __init__(self):
        self.n = 0
        self.total = 0.0

    def add(self, x):
        self.n += 1
        self.total += x

    def mean(self):
        return self.total / self.n if self.n else float("nan")


stats = RunningStats()
for v in df["total"]:
    stats.add(v)
stats.mean()

# %%
heat = df.pivot_table(index="weekday", columns="hour", values="orders", aggfunc="sum")
fig, ax = plt.subplots(figsize=(12, 4))
im = ax.imshow(heat, aspect="auto", cmap="magma")
ax.set_xlabel("hour of day")
ax.set_ylabel("weekday")
fig.colorbar(im, ax=ax, label="orders")
plt.show()

# %%
def add_time_features(df):
    df = df.copy()
    df["hour"] = df["date"].dt.hour
    df["weekday"] = df["date"].dt.dayofweek
    df["is_weekend"] = df["weekday"] >= 5
    return df


df = add_time_features(df)
print(df[["hour", "weekday", "is_weekend"]].head())

# %%
weekend_share = df["is_weekend"].mean()
print("weekend orders: %.1f%%" % (100 * weekend_share))
print("weekday mean: {:.2f}, weekend mean: {:.2f}".format(
    df.loc[~df["is_weekend"], "total"].mean(), df.loc[df["is_weekend"], "total"].mean()))

# %%
def confusion(y_true, y_pred, labels):
    m = np.zeros((len(labels), len(labels)), dtype=int)
    index = {label: i for i, label in enumerate(labels)}
    for t, p in zip(y_true, y_pred):
        m[index[t], index[p]] += 1
    return m


cm = confusion(labels, predictions, classes)
print(cm)

# %%
plt.imshow(cm, cmap="Blues")
for i in range(cm.shape[0]):
    for j in range(cm.shape[1]):
        plt.text(j, i, cm[i, j], ha="center", va="center")
plt.xlabel("predicted")
plt.ylabel("true")
plt.title("Confusion matrix")
plt.show()


# %%
def load_json_lines(path):
    """Read a JSON-lines file, skipping lines that are not valid JSON."""
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return pd.DataFrame(records)


events = load_json_lines("events.jsonl")
print(events.shape)

# %%
try:
    df = pd.read_parquet("sales.parquet")
except FileNotFoundError:
    # fall back to the slower CSV export
    df = pd.read_csv("sales.csv")
print(len(df))

# %%
def safe_divide(a: float, b: float) -> float:
    """a / b, or NaN when b is zero."""
    try:
        return a / b
    except ZeroDivisionError:
        return float("nan")


df["conversion"] = [safe_divide(o, v) for o, v in zip(df["orders"], df["visits"])]

# %%
def zscore(values: np.ndarray) -> np.ndarray:
    """Standard scores: how many standard deviations each value lies from the mean."""
    return (values - values.mean()) / values.std()


def flag_anomalies(values: np.ndarray, cutoff: float = 3.0) -> np.ndarray:
    """Indices of values more than `cutoff` standard deviations from the mean."""
    return np.flatnonzero(np.abs(zscore(values)) > cutoff)


anomalies = flag_anomalies(daily_returns.values)
print("%d anomalous days" % len(anomalies))

# %%
def weighted_mean(values: list[float], weights: list[float]) -> float:
    total = sum(v * w for v, w in zip(values, weights))
    return total / sum(weights)


weighted_mean([3.0, 4.5, 5.0], [1, 2, 1])

# %%
# hyperparameters for the baseline
learning_rate = 0.01
n_epochs = 50
batch_size = 32

# the weights start at zero, the bias too
w = np.zeros(X_train.shape[1])
bias = 0.0
for epoch in range(n_epochs):
    grad_w = X_train.T @ (X_train @ w + bias - y_train) / len(y_train)
    grad_b = np.mean(X_train @ w + bias - y_train)
    w -= learning_rate * grad_w
    bias -= learning_rate * grad_b
print(w, bias)

# %%
def train_test_split_by_date(df: pd.DataFrame, cutoff: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything before `cutoff` for training, the rest for testing (no shuffling: no leakage from the future)."""
    before = df[df["date"] < cutoff]
    after = df[df["date"] >= cutoff]
    return before, after


train_df, test_df = train_test_split_by_date(df, "2023-10-01")
print(train_df.shape, test_df.shape)

# %%
def plot_distribution(series, title, bins=40):
    """Histogram of a series with its mean marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(series.dropna(), bins=bins, color="grey")
    # the mean as a dashed line, to compare with the peak
    ax.axvline(series.mean(), color="red", linestyle="--", label="mean")
    ax.set_title(title)
    ax.legend()
    return fig


plot_distribution(df["total"], "Order totals")

# %%
for path in files:
    try:
        part = pd.read_csv(path)
    except pd.errors.ParserError as err:
        print("skipping %s: %s" % (path, err))
        continue
    print(path.name, part.shape)

# %%
def retry(fn, attempts=3):
    """Call fn until it succeeds, at most `attempts` times; the last error is raised."""
    for i in range(attempts):
        try:
            return fn()
        except ConnectionError:
            if i == attempts - 1:
                raise
            time.sleep(2 ** i)
