# %% [markdown]
# # Customer churn: a baseline model
# Predict which subscribers cancel next month from usage and billing features.

# %%
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import classification_report, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

# %%
rng = np.random.default_rng(0)
n = 3000
customers = pd.DataFrame({
    "tenure_months": rng.integers(1, 72, n),
    "monthly_fee": rng.normal(45, 15, n).clip(5, None),
    "support_calls": rng.poisson(1.5, n),
    "minutes_used": rng.normal(300, 90, n).clip(0, None),
})
logit = -2 + 0.4 * customers["support_calls"] - 0.03 * customers["tenure_months"]
customers["churned"] = rng.random(n) < 1 / (1 + np.exp(-logit))
customers["churned"].mean()

# %% [markdown]
# ## Train / test split

# %%
features = ["tenure_months", "monthly_fee", "support_calls", "minutes_used"]
X = customers[features]
y = customers["churned"].astype(int)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
print(len(X_train), len(X_test))

# %%
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
model.fit(X_train, y_train)
proba = model.predict_proba(X_test)[:, 1]
print("AUC:", round(roc_auc_score(y_test, proba), 3))

# %%
pred = (proba > 0.5).astype(int)
print(classification_report(y_test, pred, digits=3))
coefs = pd.Series(model[-1].coef_[0], index=features).sort_values()
coefs

# %%
def churn_rate_by(column, bins=5):
    groups = pd.qcut(customers[column], bins, duplicates="drop")
    return customers.groupby(groups, observed=True)["churned"].mean()


for col in ["tenure_months", "support_calls"]:
    print(churn_rate_by(col))
